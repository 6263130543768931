"""ETags, If-None-Match, If-Match, and the version column under concurrent writers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

import mars_projects.services
from mars_projects.models import Project


@pytest.fixture
def project(client, project_body):
    response = client.post("/api/v1/projects", json=project_body())
    assert response.status_code == 201
    return response.json | {"etag": response.headers["ETag"]}


def test_get_sends_etag_and_honours_if_none_match(client, project):
    response = client.get(f"/api/v1/projects/{project['id']}")
    assert response.headers["ETag"] == project["etag"]
    again = client.get(
        f"/api/v1/projects/{project['id']}", headers={"If-None-Match": project["etag"]}
    )
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == project["etag"]
    other = client.get(f"/api/v1/projects/{project['id']}", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_change_without_if_match_is_428(client, project, method):
    kwargs = {"json": {"name": "New"}} if method == "patch" else {}
    response = getattr(client, method)(f"/api/v1/projects/{project['id']}", **kwargs)
    assert response.status_code == 428
    assert response.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/projects/{project['id']}").json["name"] == project["name"]


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_change_with_stale_if_match_is_412(client, project, method):
    first = client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "First"},
        headers={"If-Match": project["etag"]},
    )
    assert first.status_code == 200
    assert first.headers["ETag"] != project["etag"]
    kwargs = {"json": {"name": "Second"}} if method == "patch" else {}
    response = getattr(client, method)(
        f"/api/v1/projects/{project['id']}", headers={"If-Match": project["etag"]}, **kwargs
    )
    assert response.status_code == 412
    assert response.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/projects/{project['id']}").json["name"] == "First"


def test_delete_with_current_if_match(client, project):
    response = client.delete(
        f"/api/v1/projects/{project['id']}", headers={"If-Match": project["etag"]}
    )
    assert response.status_code == 204
    assert client.get(f"/api/v1/projects/{project['id']}").status_code == 404


def test_two_sessions_cannot_both_update_one_version(app, db, project):
    with Session(db.engine) as alice, Session(db.engine) as bob:
        a = alice.get(Project, project["id"])
        b = bob.get(Project, project["id"])
        a.name = "Alice's"
        alice.commit()
        b.name = "Bob's"
        with pytest.raises(StaleDataError):
            bob.commit()
    assert db.session.scalar(sa.select(Project.name)) == "Alice's"


def test_writer_racing_past_the_if_match_check_gets_412(client, db, project, monkeypatch):
    """Another writer commits between our If-Match check and our UPDATE: 412, not a lost update."""
    real_update = mars_projects.services.update_project

    def racing_update(actor, target, changes):
        with db.engine.begin() as conn:
            conn.execute(
                sa.update(Project.__table__)
                .where(Project.id == target.id)
                .values(name="Racer", version=Project.version + 1)
            )
        return real_update(actor, target, changes)

    monkeypatch.setattr(mars_projects.services, "update_project", racing_update)
    response = client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "Mine"},
        headers={"If-Match": project["etag"]},
    )
    assert response.status_code == 412
    assert response.mimetype == "application/problem+json"
    monkeypatch.undo()
    assert client.get(f"/api/v1/projects/{project['id']}").json["name"] == "Racer"


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_if_match_star_does_not_skip_the_lost_update_check(client, project, method):
    """RFC 9110 lets ``*`` match any current version: it would overwrite unseen changes."""
    kwargs = {"json": {"name": "Blind"}} if method == "patch" else {}
    url = f"/api/v1/projects/{project['id']}"
    response = getattr(client, method)(url, headers={"If-Match": "*"}, **kwargs)
    assert response.status_code == 428
    assert response.mimetype == "application/problem+json"
    assert "ETag" in response.json["detail"]
    assert client.get(url).json["name"] == project["name"]


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_if_match_star_is_refused_for_an_app_too(client, method):
    created = client.post(
        "/api/v1/apps",
        json={
            "name": "Rover",
            "client_type": "public",
            "redirect_uris": ["https://app.example/callback"],
            "scopes": ["account:read"],
            "grant_types": ["authorization_code"],
        },
    )
    assert created.status_code == 201, created.json
    url = f"/api/v1/apps/{created.json['id']}"
    kwargs = {"json": {"name": "Blind"}} if method == "patch" else {}
    response = getattr(client, method)(url, headers={"If-Match": "*"}, **kwargs)
    assert response.status_code == 428
    assert response.mimetype == "application/problem+json"
    assert client.get(url).json["name"] == "Rover"
