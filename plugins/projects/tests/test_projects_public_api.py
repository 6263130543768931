"""``mars_projects.api``: what other plugins may ask of projects."""

from __future__ import annotations

import pytest

from mars_projects import api
from mars_server.testing import make_user, signed_in_client


@pytest.fixture
def people(app):
    return {name: signed_in_client(app, make_user(app)) for name in ("owner", "keeper", "guest")}


def project(client, **fields):
    body = {"slug": f"p-{len(fields)}-{fields.get('visibility', 'x')}", "name": "P"} | fields
    response = client.post("/api/v1/projects", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_who_may_see_and_change_a_project(app, people):
    owner, keeper, guest = (people[name] for name in ("owner", "keeper", "guest"))
    private = project(owner, visibility="private")
    public = project(owner, visibility="public")
    added = owner.post(
        f"/api/v1/projects/{private}/members",
        json={"user_id": keeper.user.id, "role": "maintainer"},
    )
    assert added.status_code == 200

    assert api.exists(private) and api.exists(public) and not api.exists("prj_missing")
    assert api.member_ids(private) == [owner.user.id, keeper.user.id]
    assert api.member_ids("prj_missing") == []
    assert [api.role_of(p.user.id, private) for p in (owner, keeper, guest)] == [
        "owner",
        "maintainer",
        None,
    ]
    assert api.role_of(None, private) is None

    assert api.can_see(owner.user.id, private) and api.can_see(keeper.user.id, private)
    assert not api.can_see(guest.user.id, private) and not api.can_see(None, private)
    assert api.can_see(guest.user.id, public) and api.can_see(None, public)
    assert not api.can_see(owner.user.id, "prj_missing")

    assert api.can_change(owner.user.id, private) and api.can_change(keeper.user.id, private)
    assert not api.can_change(guest.user.id, public) and not api.can_change(None, public)


def test_it_is_the_declared_api_of_the_plugin(app):
    [projects] = [p for p in app.extensions["mars"].plugins.loaded if p.info.name == "projects"]
    assert projects.info.api == "mars_projects.api"
