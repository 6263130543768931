"""``/api/v1/webhooks``: endpoints belong to their user, secrets are shown once and sealed."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import sqlalchemy as sa

from mars_server.crypto import open_sealed
from mars_server.testing import signed_in_client
from tests import webhook_fakes

BASE = "/api/v1/webhooks"
URL = "https://hooks.example.com/mars"


@pytest.fixture
def app(make_app, monkeypatch):
    yield from webhook_fakes.app_with_things(make_app, monkeypatch)


def create(client, **overrides):
    body = {"url": URL, "events": [webhook_fakes.THING_CREATED]} | overrides
    response = client.post(BASE, json=body)
    assert response.status_code == 201, response.json
    return response


def test_create_shows_the_secret_once_and_keeps_it_sealed(client, db):
    created = create(client, description="CI notifications")
    body = created.json
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert body["id"].startswith("whk_")
    assert body["url"] == URL
    assert body["events"] == [webhook_fakes.THING_CREATED]
    assert body["description"] == "CI notifications"
    assert body["disabled"] is False and body["disabled_reason"] is None
    assert created.headers["Location"].endswith(f"{BASE}/{body['id']}")
    assert created.headers["ETag"]

    shown = client.get(f"{BASE}/{body['id']}")
    assert shown.status_code == 200
    assert "secret" not in shown.json
    assert shown.headers["ETag"] == created.headers["ETag"]
    assert all("secret" not in item for item in client.get(BASE).json["items"])

    row = db.session.execute(sa.text("SELECT * FROM webhook_endpoints")).mappings().one()
    assert not any(secret in str(value) for value in row.values())
    assert secret.removeprefix("whsec_") not in str(dict(row))
    assert open_sealed(row["secret_sealed"]).decode() == secret
    assert row["owner_id"] == client.user.id


def test_the_list_is_paged_and_holds_only_your_endpoints(app, client):
    mine = [create(client, description=str(n)).json["id"] for n in range(3)]
    create(signed_in_client(app))
    first = client.get(BASE, query_string={"limit": 2})
    assert first.status_code == 200
    assert [item["id"] for item in first.json["items"]] == mine[:2]
    assert first.json["next_cursor"]
    assert 'rel="next"' in first.headers["Link"]
    second = client.get(BASE, query_string={"limit": 2, "cursor": first.json["next_cursor"]})
    assert [item["id"] for item in second.json["items"]] == mine[2:]
    assert second.json["next_cursor"] is None


def test_another_users_endpoint_does_not_exist_for_you(app, client):
    endpoint = create(client)
    etag = endpoint.headers["ETag"]
    path = f"{BASE}/{endpoint.json['id']}"
    other = signed_in_client(app)
    assert other.get(path).status_code == 404
    assert (
        other.patch(path, json={"description": "x"}, headers={"If-Match": etag}).status_code == 404
    )
    assert other.delete(path, headers={"If-Match": etag}).status_code == 404
    assert other.post(f"{path}/rotate-secret").status_code == 404
    assert other.get(f"{path}/deliveries").status_code == 404
    assert other.get(BASE).json["items"] == []
    assert client.get(path).status_code == 200


def test_a_read_only_token_cannot_write(app, client):
    endpoint = create(client).json
    reader = signed_in_client(app, user=client.user, scopes=["webhooks:read"])
    assert reader.get(BASE).status_code == 200
    refused = reader.post(BASE, json={"url": URL, "events": [webhook_fakes.THING_CREATED]})
    assert refused.status_code == 403
    assert refused.json["type"] == "urn:mars:problem:insufficient-scope"
    assert reader.post(f"{BASE}/{endpoint['id']}/rotate-secret").status_code == 403
    nothing = signed_in_client(app, user=client.user, scopes=["projects:read"])
    assert nothing.get(BASE).status_code == 403


def test_an_oauth_app_acting_for_itself_has_no_endpoints(app, client):
    registered = client.post(
        "/api/v1/apps",
        json={
            "name": "Robot",
            "client_type": "confidential",
            "redirect_uris": [],
            "scopes": ["webhooks:read", "webhooks:write"],
            "grant_types": ["client_credentials"],
        },
    )
    assert registered.status_code == 201, registered.json
    basic = base64.b64encode(
        f"{registered.json['client_id']}:{registered.json['client_secret']}".encode()
    ).decode()
    issued = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "webhooks:read webhooks:write"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert issued.status_code == 200, issued.json
    robot = {"Authorization": f"Bearer {issued.json['access_token']}"}
    anonymous = app.test_client()
    listed = anonymous.get(BASE, headers=robot)
    assert listed.status_code == 403
    assert listed.json["type"] == "urn:mars:problem:forbidden"
    created = anonymous.post(
        BASE, json={"url": URL, "events": [webhook_fakes.THING_CREATED]}, headers=robot
    )
    assert created.status_code == 403


def test_unknown_event_types_are_refused(client):
    response = client.post(
        BASE, json={"url": URL, "events": [webhook_fakes.THING_CREATED, "nothing.happened"]}
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    errors = response.json["errors"]
    assert [e["pointer"] for e in errors] == ["/events/1"]
    assert "nothing.happened" in errors[0]["detail"]
    assert client.post(BASE, json={"url": URL, "events": []}).status_code == 422
    assert client.get(BASE).json["items"] == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("ftp://hooks.example.com/x", "http:// or https://"),
        ("gopher://127.0.0.1:70/", "http:// or https://"),
        ("https://user:password@hooks.example.com/", "user name and password"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0x7f000001:8080/", "loopback"),
        ("http://2130706433:8080/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.20/", "private"),
        ("http://100.64.0.7/", "shared"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http:///nohost", "host name"),
        ("hooks.example.com/no-scheme", "http:// or https://"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_with_a_clear_reason(client, url, words):
    response = client.post(BASE, json={"url": url, "events": [webhook_fakes.THING_CREATED]})
    assert response.status_code == 422, response.json
    [error] = response.json["errors"]
    assert error["pointer"] == "/url"
    assert words in error["detail"]


def test_private_urls_are_accepted_when_the_server_allows_them(make_app, monkeypatch):
    webhook_fakes.install(monkeypatch)
    allowed = make_app(WEBHOOKS_ALLOW_PRIVATE=True)
    with allowed.app_context():
        client = signed_in_client(allowed)
        create(client, url="http://127.0.0.1:8080/hook")
        create(client, url="http://localhost:8080/hook")
        refused = client.post(
            BASE, json={"url": "file:///etc/passwd", "events": [webhook_fakes.THING_CREATED]}
        )
        assert refused.status_code == 422


def test_changes_need_the_current_etag(client):
    created = create(client)
    path = f"{BASE}/{created.json['id']}"
    change = {"url": "https://other.example.com/in", "events": [webhook_fakes.THING_DELETED]}
    assert client.patch(path, json=change).status_code == 428
    stale = client.patch(path, json=change, headers={"If-Match": '"nope"'})
    assert stale.status_code == 412
    changed = client.patch(path, json=change, headers={"If-Match": created.headers["ETag"]})
    assert changed.status_code == 200, changed.json
    assert changed.json["url"] == change["url"]
    assert changed.json["events"] == [webhook_fakes.THING_DELETED]
    assert changed.json["description"] == ""
    assert changed.headers["ETag"] != created.headers["ETag"]
    again = client.patch(path, json=change, headers={"If-Match": created.headers["ETag"]})
    assert again.status_code == 412
    bad = client.patch(
        path, json={"url": "http://10.1.2.3/"}, headers={"If-Match": changed.headers["ETag"]}
    )
    assert bad.status_code == 422
    unknown = client.patch(
        path, json={"secret": "x"}, headers={"If-Match": changed.headers["ETag"]}
    )
    assert unknown.status_code == 422
    assert client.get(path).json["url"] == change["url"]


def test_the_owner_disables_and_enables_an_endpoint(client):
    created = create(client)
    path = f"{BASE}/{created.json['id']}"
    off = client.patch(path, json={"disabled": True}, headers={"If-Match": created.headers["ETag"]})
    assert off.status_code == 200
    assert off.json["disabled"] is True
    assert off.json["disabled_reason"] == "by_owner"
    assert off.json["disabled_at"]
    on = client.patch(path, json={"disabled": False}, headers={"If-Match": off.headers["ETag"]})
    assert on.json["disabled"] is False
    assert on.json["disabled_reason"] is None and on.json["disabled_at"] is None


def test_delete_needs_the_etag_and_removes_the_endpoint(client, db):
    created = create(client)
    path = f"{BASE}/{created.json['id']}"
    assert client.delete(path).status_code == 428
    assert client.delete(path, headers={"If-Match": created.headers["ETag"]}).status_code == 204
    assert client.get(path).status_code == 404
    assert db.session.scalar(sa.text("SELECT count(*) FROM webhook_subscriptions")) == 0


def test_rotation_shows_the_new_secret_once_and_keeps_the_old_one_for_a_while(client, db):
    created = create(client)
    old = created.json["secret"]
    path = f"{BASE}/{created.json['id']}"
    before = dt.datetime.now(dt.UTC)
    rotated = client.post(f"{path}/rotate-secret")
    assert rotated.status_code == 200, rotated.json
    new = rotated.json["secret"]
    assert new.startswith("whsec_") and new != old
    expires = dt.datetime.fromisoformat(rotated.json["previous_secret_expires_at"])
    assert dt.timedelta(hours=23.9) < expires - before < dt.timedelta(hours=24.1)
    assert rotated.headers["ETag"] != created.headers["ETag"]
    assert "secret" not in client.get(path).json
    row = db.session.execute(sa.text("SELECT * FROM webhook_endpoints")).mappings().one()
    assert open_sealed(row["secret_sealed"]).decode() == new
    assert open_sealed(row["previous_secret_sealed"]).decode() == old
    assert not any(s in str(dict(row)) for s in (old, new))


def test_scopes_are_declared(app):
    scopes = app.extensions["mars"].scopes
    assert {"webhooks:read", "webhooks:write"} <= set(scopes)


def test_settings_have_defaults_and_come_from_the_environment(make_app, monkeypatch):
    from mars_server import plugin_settings
    from mars_server.config import ConfigError

    default = make_app()
    with default.app_context():
        assert plugin_settings("webhooks") == {
            "timeout_seconds": 15.0,
            "max_response_bytes": 65536,
            "secret_grace_hours": 24.0,
            "disable_after_days": 5.0,
            "log_retention_days": 30,
        }
    monkeypatch.setenv("MARS_WEBHOOKS__TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("MARS_WEBHOOKS__SECRET_GRACE_HOURS", "0")
    configured = make_app()
    with configured.app_context():
        assert plugin_settings("webhooks")["timeout_seconds"] == 2.5
        assert plugin_settings("webhooks")["secret_grace_hours"] == 0
    for beyond in ("0", "15.5"):  # an attempt takes at most 15 s
        monkeypatch.setenv("MARS_WEBHOOKS__TIMEOUT_SECONDS", beyond)
        with pytest.raises(ConfigError, match="timeout_seconds"):
            make_app()


def test_without_a_grace_period_rotation_drops_the_old_secret_at_once(make_app, monkeypatch):
    webhook_fakes.install(monkeypatch)
    app = make_app(PLUGINS={"webhooks": {"secret_grace_hours": 0}})
    with app.app_context():
        client = signed_in_client(app)
        created = create(client).json
        rotated = client.post(f"{BASE}/{created['id']}/rotate-secret").json
        assert rotated["previous_secret_expires_at"] is None
