"""``/api/v1/apps``: users register OAuth apps; secrets are shown once and rotate with grace."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import time_machine

from mars_server.auth import secrets
from mars_server.auth.models import OAuthClient

BODY = {
    "name": "Rover",
    "client_type": "confidential",
    "redirect_uris": ["https://app.example/callback", "http://127.0.0.1:8765/cb"],
    "scopes": ["account:read"],
    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
}


@pytest.fixture
def headers(create_user, auth_headers):
    # The apps' scopes too: no credential gives an app more than it has itself.
    return auth_headers(create_user(), ["apps:read", "apps:write", "account:read"])


def client_credentials(client, app_json, secret):
    raw = base64.b64encode(f"{app_json['client_id']}:{secret}".encode()).decode()
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {raw}"},
    )


def test_create_shows_the_secret_once_and_stores_its_digest(client, db, headers):
    created = client.post("/api/v1/apps", json=BODY, headers=headers)
    assert created.status_code == 201, created.json
    secret = created.json["client_secret"]
    assert secret.startswith("mars_cs_")
    assert created.json["client_id"].startswith("mars_app_")
    assert created.headers["ETag"]
    row = db.session.get(OAuthClient, created.json["id"])
    assert row.secret_digest == secrets.digest(secret)
    listed = client.get("/api/v1/apps", headers=headers).json["items"]
    assert [a["id"] for a in listed] == [created.json["id"]]
    assert "client_secret" not in listed[0]
    shown = client.get(f"/api/v1/apps/{created.json['id']}", headers=headers)
    assert "client_secret" not in shown.json
    assert shown.json["scopes"] == ["account:read"]
    assert client_credentials(client, created.json, secret).status_code == 200


def test_public_apps_have_no_secret(client, headers):
    body = BODY | {"client_type": "public", "grant_types": ["authorization_code"]}
    created = client.post("/api/v1/apps", json=body, headers=headers)
    assert created.status_code == 201
    assert created.json["client_secret"] is None
    rotate = client.post(f"/api/v1/apps/{created.json['id']}/secret", headers=headers)
    assert rotate.status_code == 409


def test_rotation_keeps_the_old_secret_for_the_grace_period(client, headers):
    with time_machine.travel(dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC), tick=False) as clock:
        created = client.post("/api/v1/apps", json=BODY, headers=headers).json
        old = created["client_secret"]
        rotated = client.post(f"/api/v1/apps/{created['id']}/secret", headers=headers)
        assert rotated.status_code == 200
        new = rotated.json["client_secret"]
        assert new != old
        assert rotated.json["previous_secret_expires_at"].startswith("2026-06-01T10:00:00")
        assert client_credentials(client, created, old).status_code == 200
        assert client_credentials(client, created, new).status_code == 200
        clock.shift(dt.timedelta(minutes=60, seconds=1))
        assert client_credentials(client, created, old).status_code == 401
        assert client_credentials(client, created, new).status_code == 200
        again = client.post(f"/api/v1/apps/{created['id']}/secret", headers=headers).json
        assert client_credentials(client, created, old).status_code == 401
        assert client_credentials(client, created, new).status_code == 200
        assert client_credentials(client, created, again["client_secret"]).status_code == 200


def test_others_apps_are_404(client, create_user, auth_headers, headers):
    created = client.post("/api/v1/apps", json=BODY, headers=headers)
    app_id = created.json["id"]
    other = auth_headers(create_user(), ["apps:read", "apps:write"])
    assert client.get("/api/v1/apps", headers=other).json["items"] == []
    assert client.get(f"/api/v1/apps/{app_id}", headers=other).status_code == 404
    etag = created.headers["ETag"]
    patched = client.patch(
        f"/api/v1/apps/{app_id}", json={"name": "Mine"}, headers=other | {"If-Match": etag}
    )
    assert patched.status_code == 404
    deleted = client.delete(f"/api/v1/apps/{app_id}", headers=other | {"If-Match": etag})
    assert deleted.status_code == 404
    assert client.post(f"/api/v1/apps/{app_id}/secret", headers=other).status_code == 404


def test_read_only_scope_cannot_write(client, create_user, auth_headers):
    reader = auth_headers(create_user(), ["apps:read"])
    assert client.post("/api/v1/apps", json=BODY, headers=reader).status_code == 403


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/cb",
        "ftp://app.example/cb",
        "/relative/cb",
        "https://user@app.example/cb",
        "https://app.example/cb#fragment",
        "https://app.example/c b",
        "javascript:alert(1)",
        "https://",
    ],
)
def test_redirect_uris_are_validated(client, headers, uri):
    response = client.post("/api/v1/apps", json=BODY | {"redirect_uris": [uri]}, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"][0]["pointer"] == "/redirect_uris"


@pytest.mark.parametrize(
    "uri", ["http://localhost:3000/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb"]
)
def test_loopback_http_redirect_uris_are_allowed(client, headers, uri):
    response = client.post("/api/v1/apps", json=BODY | {"redirect_uris": [uri]}, headers=headers)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(
    "changes",
    [
        {"scopes": ["everything"]},
        {"scopes": []},
        {"grant_types": ["password"]},
        {"grant_types": ["implicit"]},
        {"client_type": "public", "grant_types": ["client_credentials"]},
        {"grant_types": ["refresh_token"]},
        {"redirect_uris": [], "grant_types": ["authorization_code"]},
    ],
)
def test_scopes_and_grants_are_validated(client, headers, changes):
    response = client.post("/api/v1/apps", json=BODY | changes, headers=headers)
    assert response.status_code == 422, response.json


@pytest.mark.parametrize("field", ["client_id", "owner_id", "id", "secret", "client_secret"])
def test_mass_assignment_fields_are_rejected(client, headers, field):
    response = client.post("/api/v1/apps", json=BODY | {field: "x"}, headers=headers)
    assert response.status_code == 422
    created = client.post("/api/v1/apps", json=BODY, headers=headers)
    patched = client.patch(
        f"/api/v1/apps/{created.json['id']}",
        json={field: "x"},
        headers=headers | {"If-Match": created.headers["ETag"]},
    )
    assert patched.status_code == 422


def test_update_needs_if_match_and_delete_revokes_tokens(client, headers):
    created = client.post("/api/v1/apps", json=BODY | {"scopes": ["apps:read"]}, headers=headers)
    app_id, etag = created.json["id"], created.headers["ETag"]
    url = f"/api/v1/apps/{app_id}"
    assert client.patch(url, json={"name": "New"}, headers=headers).status_code == 428
    changed = client.patch(url, json={"name": "New"}, headers=headers | {"If-Match": etag})
    assert changed.status_code == 200
    assert changed.json["name"] == "New"
    assert changed.json["client_type"] == "confidential"
    stale = client.patch(url, json={"name": "Newer"}, headers=headers | {"If-Match": etag})
    assert stale.status_code == 412
    token = client_credentials(client, created.json, created.json["client_secret"]).json
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    # the app's own token is valid (403: an app has no apps), until the app is deleted
    assert client.get("/api/v1/apps", headers=bearer).status_code == 403
    assert (
        client.delete(url, headers=headers | {"If-Match": changed.headers["ETag"]}).status_code
        == 204
    )
    assert client.get(url, headers=headers).status_code == 404
    assert client.get("/api/v1/apps", headers=bearer).status_code == 401
