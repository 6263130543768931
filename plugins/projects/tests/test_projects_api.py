"""The projects API, end to end through the app."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from mars_projects.models import Project
from mars_server.testing import signed_in_client


def test_create_returns_the_project_with_location_and_etag(client, db):
    response = client.post(
        "/api/v1/projects",
        json={
            "slug": "apollo",
            "name": "Apollo",
            "description": "To the moon",
            "visibility": "public",
        },
    )
    assert response.status_code == 201
    body = response.json
    assert re.fullmatch(r"prj_[0-9a-z]{26}", body["id"])
    assert body | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "slug": "apollo",
        "name": "Apollo",
        "description": "To the moon",
        "visibility": "public",
        "created_at": None,
        "updated_at": None,
    }
    assert body["created_at"].endswith("+00:00")
    assert response.headers["Location"] == f"/api/v1/projects/{body['id']}"
    assert response.headers["ETag"]
    stored = db.session.get(Project, body["id"])
    assert (stored.slug, stored.version) == ("apollo", 1)


def test_defaults_are_private_and_empty(create_project):
    project = create_project()
    assert project["visibility"] == "private"
    assert project["description"] == ""


@pytest.mark.parametrize("field", ["id", "created_at", "updated_at", "version", "owner"])
def test_server_fields_in_the_body_are_refused(client, db, field):
    response = client.post("/api/v1/projects", json={"slug": "x", "name": "X", field: "prj_mine"})
    assert response.status_code == 422
    assert {e["pointer"] for e in response.json["errors"]} == {f"/{field}"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Project)) == 0


def test_slug_is_unique(client, create_project):
    create_project(slug="taken")
    response = client.post("/api/v1/projects", json={"slug": "taken", "name": "Again"})
    assert response.status_code == 409
    assert response.json["errors"][0]["pointer"] == "/slug"


@pytest.mark.parametrize("slug", ["", "UPPER", "-lead", "trail-", "sp ace", "x" * 65, "ü"])
def test_bad_slugs_are_422(client, slug):
    response = client.post("/api/v1/projects", json={"slug": slug, "name": "N"})
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/slug"


def test_list_filters_by_visibility(client, create_project):
    public = create_project(visibility="public")
    create_project(visibility="private")
    listed = client.get("/api/v1/projects?visibility=public").json
    assert [p["id"] for p in listed["items"]] == [public["id"]]
    assert len(client.get("/api/v1/projects").json["items"]) == 2


def test_get_unknown_project_is_404(client):
    response = client.get("/api/v1/projects/prj_nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_patch_changes_only_what_is_sent(client, create_project):
    project = create_project(description="keep me")
    response = client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "Renamed", "visibility": "public"},
        headers={"If-Match": project["etag"]},
    )
    assert response.status_code == 200
    assert response.json["name"] == "Renamed"
    assert response.json["visibility"] == "public"
    assert response.json["description"] == "keep me"
    assert response.json["updated_at"] >= project["updated_at"]


def test_patch_to_a_taken_slug_is_409(client, create_project):
    create_project(slug="first")
    second = create_project(slug="second")
    response = client.patch(
        f"/api/v1/projects/{second['id']}",
        json={"slug": "first"},
        headers={"If-Match": second["etag"]},
    )
    assert response.status_code == 409
    assert client.get(f"/api/v1/projects/{second['id']}").json["slug"] == "second"


def test_patch_rejects_unknown_and_server_fields(client, create_project):
    project = create_project()
    response = client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"id": "prj_x"},
        headers={"If-Match": project["etag"]},
    )
    assert response.status_code == 422


def test_description_limit_is_a_setting(make_app):
    client = signed_in_client(make_app(PLUGINS={"projects": {"description_max_length": 10}}))
    response = client.post(
        "/api/v1/projects", json={"slug": "long", "name": "L", "description": "x" * 11}
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/description"
    ok = client.post(
        "/api/v1/projects", json={"slug": "short", "name": "S", "description": "x" * 10}
    )
    assert ok.status_code == 201
