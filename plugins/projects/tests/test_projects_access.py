"""Who may see and change which project: scopes, membership roles and visibility."""

from __future__ import annotations

import pytest

from mars_server.testing import signed_in_client


@pytest.fixture
def private_project(alice):
    response = alice.post("/api/v1/projects", json={"slug": "secret", "name": "Secret"})
    assert response.status_code == 201
    return response.json | {"etag": response.headers["ETag"]}


def test_the_creator_owns_the_project(alice, private_project):
    members = alice.get(f"/api/v1/projects/{private_project['id']}/members").json["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [(alice.user.id, "owner")]


def test_a_private_project_is_404_to_others_for_every_operation(app, bob, private_project):
    pid, etag = private_project["id"], private_project["etag"]
    anonymous = app.test_client()
    for client in (bob, anonymous):
        assert client.get(f"/api/v1/projects/{pid}").status_code == 404
        assert client.get(f"/api/v1/projects/{pid}/members").status_code == 404
        assert pid not in {p["id"] for p in client.get("/api/v1/projects").json["items"]}
    assert (
        bob.patch(
            f"/api/v1/projects/{pid}", json={"name": "Mine"}, headers={"If-Match": etag}
        ).status_code
        == 404
    )
    assert bob.delete(f"/api/v1/projects/{pid}", headers={"If-Match": etag}).status_code == 404
    assert (
        bob.post(
            f"/api/v1/projects/{pid}/members", json={"user_id": bob.user.id, "role": "owner"}
        ).status_code
        == 404
    )
    assert bob.delete(f"/api/v1/projects/{pid}/members/{bob.user.id}").status_code == 404


def test_a_public_project_is_readable_by_all_but_writable_by_members(app, alice, bob):
    created = alice.post(
        "/api/v1/projects", json={"slug": "open", "name": "Open", "visibility": "public"}
    )
    pid, etag = created.json["id"], created.headers["ETag"]
    assert app.test_client().get(f"/api/v1/projects/{pid}").status_code == 200
    assert bob.get(f"/api/v1/projects/{pid}").status_code == 200
    assert (
        bob.patch(
            f"/api/v1/projects/{pid}", json={"name": "Mine"}, headers={"If-Match": etag}
        ).status_code
        == 403
    )
    assert (
        app.test_client().post("/api/v1/projects", json={"slug": "x", "name": "X"}).status_code
        == 401
    )


def test_roles_decide_who_changes_what(app, alice, bob, private_project):
    pid = private_project["id"]
    carol = signed_in_client(app)
    assert (
        alice.post(
            f"/api/v1/projects/{pid}/members", json={"user_id": bob.user.id, "role": "member"}
        ).status_code
        == 200
    )
    # a member sees the private project but may not change it or its members
    got = bob.get(f"/api/v1/projects/{pid}")
    assert got.status_code == 200
    assert (
        bob.patch(
            f"/api/v1/projects/{pid}", json={"name": "B"}, headers={"If-Match": got.headers["ETag"]}
        ).status_code
        == 403
    )
    assert (
        bob.post(
            f"/api/v1/projects/{pid}/members", json={"user_id": carol.user.id, "role": "member"}
        ).status_code
        == 403
    )
    # a maintainer may change it and add members, but not owners, and not delete it
    alice.post(
        f"/api/v1/projects/{pid}/members", json={"user_id": bob.user.id, "role": "maintainer"}
    )
    changed = bob.patch(
        f"/api/v1/projects/{pid}",
        json={"name": "By Bob"},
        headers={"If-Match": got.headers["ETag"]},
    )
    assert changed.status_code == 200
    assert (
        bob.post(
            f"/api/v1/projects/{pid}/members", json={"user_id": carol.user.id, "role": "member"}
        ).status_code
        == 200
    )
    assert (
        bob.post(
            f"/api/v1/projects/{pid}/members", json={"user_id": carol.user.id, "role": "owner"}
        ).status_code
        == 403
    )
    assert (
        bob.delete(
            f"/api/v1/projects/{pid}", headers={"If-Match": changed.headers["ETag"]}
        ).status_code
        == 403
    )
    assert (
        alice.delete(
            f"/api/v1/projects/{pid}", headers={"If-Match": changed.headers["ETag"]}
        ).status_code
        == 204
    )


def test_the_last_owner_cannot_leave(alice, private_project):
    response = alice.delete(f"/api/v1/projects/{private_project['id']}/members/{alice.user.id}")
    assert response.status_code == 409


def test_members_must_be_active_users(alice, private_project):
    response = alice.post(
        f"/api/v1/projects/{private_project['id']}/members",
        json={"user_id": "usr_nobody", "role": "member"},
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/user_id"


def test_a_read_only_token_cannot_write(app, alice, private_project):
    reader = signed_in_client(app, alice.user, scopes=["projects:read"])
    assert reader.get(f"/api/v1/projects/{private_project['id']}").status_code == 200
    response = reader.post("/api/v1/projects", json={"slug": "nope", "name": "Nope"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert (
        reader.patch(
            f"/api/v1/projects/{private_project['id']}",
            json={"name": "N"},
            headers={"If-Match": private_project["etag"]},
        ).status_code
        == 403
    )


def test_a_token_without_projects_scopes_cannot_even_read(app, alice, private_project):
    other = signed_in_client(app, alice.user, scopes=["account:read"])
    assert other.get("/api/v1/projects").status_code == 403


@pytest.mark.parametrize("field", ["owner", "owner_id", "role", "members", "id"])
def test_ownership_fields_in_a_body_are_refused(alice, field):
    response = alice.post(
        "/api/v1/projects", json={"slug": "mass", "name": "Mass", field: "usr_attacker"}
    )
    assert response.status_code == 422
    assert {e["pointer"] for e in response.json["errors"]} == {f"/{field}"}
