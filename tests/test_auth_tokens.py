"""Personal access tokens, the actor hook, scopes, permissions and roles over HTTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.auth import secrets
from mars_server.auth.models import PersonalAccessToken
from mars_server.testing import make_token


def test_hook_mars_actor_from_request(client, create_user, token_for):
    user = create_user()
    token = token_for(user, ["account:read"])
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["id"] == user.id
    assert me.json["roles"] == ["member"]


def test_hook_mars_scopes(client):
    spec = client.get("/api/v1/openapi.json").json
    scopes = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    assert {
        "account:read",
        "account:write",
        "users:read",
        "users:write",
    } <= set(scopes)
    assert all(description for description in scopes.values())


def test_hook_mars_permissions(client, create_user, auth_headers):
    member, admin = create_user(), create_user(roles=("member", "admin"))
    scopes = ["users:read"]
    assert client.get("/api/v1/users", headers=auth_headers(member, scopes)).status_code == 403
    listed = client.get("/api/v1/users", headers=auth_headers(admin, scopes))
    assert listed.status_code == 200
    assert {member.id, admin.id} <= {u["id"] for u in listed.json["items"]}


def test_no_token_is_401_with_bearer_challenge(app):
    response = app.test_client().get("/api/v1/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mars"'


@pytest.mark.parametrize(
    "token", ["mars_pat_" + "A" * 28, "not-a-token", "mars_pat_short", "Basic dXNlcjpwYXNz"]
)
def test_bad_token_is_401_invalid_token(client, token):
    header = token if token.startswith("Basic") else f"Bearer {token}"
    response = client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_token_without_the_scope_is_403_insufficient_scope(client, create_user, token_for):
    token = token_for(create_user(), ["account:read"])
    response = client.patch(
        "/api/v1/me",
        json={"display_name": "X"},
        headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
    )
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="account:write"' in challenge


def test_token_format_has_prefix_entropy_and_checksum():
    token = secrets.new_personal_access_token()
    assert re.fullmatch(r"mars_pat_[0-9A-Za-z]{28}", token)
    assert secrets.is_personal_access_token(token)
    typo = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert not secrets.is_personal_access_token(typo)
    assert len({secrets.new_personal_access_token() for _ in range(1000)}) == 1000


def test_create_shows_the_token_once_and_stores_only_a_digest(
    client, db, create_user, auth_headers
):
    user = create_user()
    headers = auth_headers(user, ["account:read", "account:write"])
    created = client.post(
        "/api/v1/me/tokens", headers=headers, json={"name": "laptop", "scopes": ["account:read"]}
    )
    assert created.status_code == 201
    token = created.json["token"]
    assert secrets.is_personal_access_token(token)
    assert created.json["hint"] == token[:13]
    row = db.session.get(PersonalAccessToken, created.json["id"])
    assert row.digest == secrets.digest(token)
    assert token not in {row.digest, row.hint, row.scopes}
    listed = client.get("/api/v1/me/tokens", headers=headers).json["items"]
    laptop = next(t for t in listed if t["id"] == created.json["id"])
    assert "token" not in laptop
    assert laptop["scopes"] == ["account:read"]


def test_token_use_is_recorded(client, db, create_user, token_for):
    user = create_user()
    token = token_for(user, ["account:read"])
    client.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    row = db.session.scalars(
        sa.select(PersonalAccessToken).where(PersonalAccessToken.user_id == user.id)
    ).one()
    db.session.refresh(row)
    assert row.last_used_ip == "192.0.2.7"
    assert row.last_used_at is not None


def test_unknown_scopes_and_too_long_lifetimes_are_refused(client, create_user, auth_headers):
    headers = auth_headers(create_user(), ["account:write"])
    unknown = client.post(
        "/api/v1/me/tokens", headers=headers, json={"name": "x", "scopes": ["everything"]}
    )
    assert unknown.status_code == 422
    too_long = client.post(
        "/api/v1/me/tokens",
        headers=headers,
        json={"name": "x", "scopes": ["account:read"], "expires_in_days": 366},
    )
    assert too_long.status_code == 422


def test_revoked_and_expired_tokens_stop_working(client, create_user, token_for, auth_headers):
    user = create_user()
    manager = auth_headers(user, ["account:read", "account:write"])
    with time_machine.travel(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), tick=False) as clock:
        short = token_for(user, ["account:read"], expires_in_days=1)
        assert (
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {short}"}).status_code
            == 200
        )
        clock.shift(dt.timedelta(days=1, seconds=1))
        assert (
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {short}"}).status_code
            == 401
        )
    token = token_for(user, ["account:read"])
    row_id = next(
        t["id"]
        for t in client.get("/api/v1/me/tokens", headers=manager).json["items"]
        if t["scopes"] == ["account:read"] and t["revoked_at"] is None and t["expires_at"] > "2027"
    )
    assert client.delete(f"/api/v1/me/tokens/{row_id}", headers=manager).status_code == 204
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_someone_elses_token_is_404(client, create_user, auth_headers, token_for):
    alice, bob = create_user(), create_user()
    token_for(alice, ["account:read"])
    alice_token_id = client.get(
        "/api/v1/me/tokens", headers=auth_headers(alice, ["account:read"])
    ).json["items"][0]["id"]
    response = client.delete(
        f"/api/v1/me/tokens/{alice_token_id}", headers=auth_headers(bob, ["account:write"])
    )
    assert response.status_code == 404


def test_patch_me_needs_if_match_and_rejects_server_fields(client, create_user, auth_headers):
    headers = auth_headers(create_user(), ["account:read", "account:write"])
    current = client.get("/api/v1/me", headers=headers)
    assert (
        client.patch("/api/v1/me", json={"display_name": "New"}, headers=headers).status_code == 428
    )
    for field in ("email", "status", "roles", "id"):
        refused = client.patch(
            "/api/v1/me", json={field: "x"}, headers=headers | {"If-Match": current.headers["ETag"]}
        )
        assert refused.status_code == 422, field
    changed = client.patch(
        "/api/v1/me",
        json={"display_name": "New"},
        headers=headers | {"If-Match": current.headers["ETag"]},
    )
    assert changed.status_code == 200
    assert changed.json["display_name"] == "New"


def test_admins_grant_and_revoke_roles(client, create_user, auth_headers):
    admin, user = create_user(roles=("member", "admin")), create_user()
    headers = auth_headers(admin, ["users:read", "users:write"])
    granted = client.post(f"/api/v1/users/{user.id}/roles", json={"role": "admin"}, headers=headers)
    assert granted.json["roles"] == ["admin", "member"]
    revoked = client.delete(f"/api/v1/users/{user.id}/roles/admin", headers=headers)
    assert revoked.json["roles"] == ["member"]
    member_headers = auth_headers(user, ["users:read", "users:write"])
    assert (
        client.post(
            f"/api/v1/users/{admin.id}/roles", json={"role": "member"}, headers=member_headers
        ).status_code
        == 403
    )


def test_disabled_user_tokens_stop_working(client, create_user, token_for, runner):
    user = create_user(email="gone@example.test")
    token = token_for(user, ["account:read"])
    result = runner.invoke(args=["users", "disable", "gone@example.test"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_hook_mars_user_info(app, create_user):
    from mars_server.http import user_info

    user = create_user(display_name="Ada", status="disabled")
    info = user_info(user.id)
    assert (info.id, info.display_name, info.active) == (user.id, "Ada", False)
    assert user_info("usr_nobody") is None


def test_the_longest_token_lifetime_is_a_setting(make_app, create_user, runner):
    app = make_app(PLUGINS={"auth": {"pat_max_days": 30, "pat_default_days": 7}})
    client = app.test_client()
    user = create_user(email="short@example.test")
    caller = make_token(app, user, ["account:read", "account:write"], expires_in_days=30)
    headers = {"Authorization": f"Bearer {caller}"}

    def create(**fields):
        body = {"name": "ci", "scopes": ["account:read"]} | fields
        return client.post("/api/v1/me/tokens", headers=headers, json=body)

    too_long = create(expires_in_days=31)
    assert too_long.status_code == 422
    assert "at most 30 days" in str(too_long.json["errors"])
    assert create(expires_in_days=30).status_code == 201
    made = dt.datetime.fromisoformat(create().json["expires_at"])
    assert dt.timedelta(days=6, hours=23) < made - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)
    with app.app_context():  # the commands run in this app, not the fixture's
        refused = app.test_cli_runner().invoke(
            args=[
                "tokens",
                "create",
                "short@example.test",
                "--scope",
                "account:read",
                "--expires-in",
                "31",
            ]
        )
    assert refused.exit_code != 0
    assert "mars_pat_" not in refused.output


@pytest.mark.parametrize("why", ["expired", "revoked"])
def test_an_expired_or_revoked_token_is_invalid_token(client, create_user, token_for, runner, why):
    user = create_user(email="old@example.test")
    with time_machine.travel(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), tick=False) as clock:
        token = token_for(user, ["account:read"], expires_in_days=1)
        if why == "expired":
            clock.shift(dt.timedelta(days=2))
        else:
            assert (
                runner.invoke(args=["tokens", "revoke", "--user", "old@example.test"]).exit_code
                == 0
            )
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.mimetype == "application/problem+json"
