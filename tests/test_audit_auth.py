"""Security events reach the audit log, through real requests and real commands: who, what,
from where, with which request id, and never a secret."""

from __future__ import annotations

import base64
import email
import getpass
import json
import re
import secrets as random
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from mars_server.audit.models import AuditRecord
from mars_server.db import db as mars_db
from mars_server.testing import make_token, make_user, run_due_jobs

PASSWORD = "correct horse battery staple"
UA = "Mozilla/5.0 (audit test)"
REDIRECT = "https://app.example/callback"
OPERATOR = f"cli:{getpass.getuser()}"


def entries(action: str | None = None) -> list[AuditRecord]:
    mars_db.session.expire_all()
    stmt = sa.select(AuditRecord).order_by(AuditRecord.occurred_at, AuditRecord.id)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    return list(mars_db.session.scalars(stmt))


def one(action: str) -> AuditRecord:
    found = entries(action)
    assert len(found) == 1, [(r.action, r.details) for r in found]
    return found[0]


def assert_from_request(row: AuditRecord, request_id: str, actor: str | None) -> None:
    assert (row.actor_id, row.address, row.user_agent, row.request_id) == (
        actor,
        "127.0.0.1",
        UA,
        request_id,
    )


def assert_no_secret(*values: str) -> None:
    """Dump every column of every row and look for each secret, whole."""
    with mars_db.engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.__table__)).all()
    dump = json.dumps([[str(v) for v in row] for row in rows])
    assert rows
    for value in values:
        assert value and value not in dump


@pytest.fixture
def app_config():
    # Links in mail sent from the command line (no request to take the host from).
    return {"PUBLIC_URL": "https://mars.example"}


@pytest.fixture
def browser(app):
    """An anonymous test client with a user agent, like a person's browser."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = UA
    return client


def req(name: str) -> str:
    """The request id a test sends (ids shorter than 8 characters are replaced)."""
    return f"request-{name}"


def rid(name: str) -> dict[str, str]:
    return {"X-Request-ID": req(name)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mailed_tokens(app) -> list[str]:
    """The tokens of the links mailed so far, oldest first."""
    run_due_jobs(app)
    found = []
    for path in sorted(Path(app.config["MARS"]["INSTANCE_PATH"], "mail").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
        found += re.findall(r"token=([A-Za-z0-9_\-]+)", text.get_payload(decode=True).decode())
    return found


# --- Accounts by e-mail -------------------------------------------------------------------------


def test_registration_verification_and_password_reset(app, browser, token_for):
    registered = browser.post(
        "/api/v1/accounts",
        json={"email": "new@example.test", "password": PASSWORD},
        headers=rid("register-1"),
    )
    assert registered.status_code == 202
    row = one("auth.registered")
    assert_from_request(row, req("register-1"), None)
    assert row.target.startswith("usr_") and row.details == {"email": "new@example.test"}

    [verify_link] = mailed_tokens(app)
    assert (
        browser.post(
            "/api/v1/accounts/verify", json={"token": verify_link}, headers=rid("verify-1")
        ).status_code
        == 204
    )
    verified = one("auth.email_verified")
    assert_from_request(verified, req("verify-1"), None)
    assert (verified.target, verified.details) == (row.target, {"previous_status": "pending"})

    answers = [
        browser.post(
            "/api/v1/accounts/password-reset", json={"email": address}, headers=rid(f"ask-{n}")
        )
        for n, address in enumerate(["nobody@example.test", "new@example.test"])
    ]
    assert answers[0].status_code == answers[1].status_code == 202
    assert answers[0].json == answers[1].json  # the answer never tells
    asked = one("auth.password_reset_requested")  # the real account only
    assert_from_request(asked, req("ask-1"), None)
    assert asked.target == row.target

    from mars_server.auth.models import User

    user = mars_db.session.get(User, row.target)
    old_token = token_for(user, ["account:read"])
    reset_link = mailed_tokens(app)[-1]
    new_password = "a brand new passphrase"
    confirmed = browser.post(
        "/api/v1/accounts/password-reset/confirm",
        json={"token": reset_link, "password": new_password},
        headers=rid("reset-1"),
    )
    assert confirmed.status_code == 204
    reset = one("auth.password_reset")
    assert_from_request(reset, req("reset-1"), None)
    assert reset.details == {"method": "email_link", "previous_status": "active"}
    [revoked] = [r for r in entries("auth.token_revoked") if r.request_id == req("reset-1")]
    assert revoked.target == user.id
    assert revoked.details == {
        "kind": "all",
        "reason": "password_set",
        "personal_access_tokens": 1,
        "oauth_tokens": 0,
    }
    assert_no_secret(PASSWORD, new_password, verify_link, reset_link, old_token)


# --- A user with a token ------------------------------------------------------------------------


def test_a_users_own_changes(app, browser, create_user, token_for):
    user = create_user(email="ada@example.test", password=PASSWORD, display_name="Ada")
    headers = bearer(token_for(user, ["account:read", "account:write"]))

    created = browser.post(
        "/api/v1/me/tokens",
        json={"name": "laptop", "scopes": ["account:read"]},
        headers=headers | rid("pat-1"),
    )
    assert created.status_code == 201
    made = [r for r in entries("auth.token_created") if r.request_id == req("pat-1")]
    assert len(made) == 1
    assert_from_request(made[0], req("pat-1"), user.id)
    assert made[0].target == created.json["id"]
    assert made[0].details["kind"] == "personal_access_token"
    assert made[0].details["scopes"] == ["account:read"]
    assert made[0].details["name"] == "laptop"

    revoke = browser.delete(f"/api/v1/me/tokens/{created.json['id']}", headers=headers | rid("r-1"))
    assert revoke.status_code == 204
    revoked = one("auth.token_revoked")
    assert_from_request(revoked, req("r-1"), user.id)
    assert revoked.target == created.json["id"]
    browser.delete(f"/api/v1/me/tokens/{created.json['id']}", headers=headers)
    assert len(entries("auth.token_revoked")) == 1  # revoking twice changes nothing

    etag = browser.get("/api/v1/me", headers=headers).headers["ETag"]
    patched = browser.patch(
        "/api/v1/me",
        json={"display_name": "Ada L."},
        headers=headers | rid("me-1") | {"If-Match": etag},
    )
    assert patched.status_code == 200
    profile = one("auth.profile_updated")
    assert_from_request(profile, req("me-1"), user.id)
    assert profile.details == {"changes": {"display_name": "Ada L."}}

    wrong = browser.post(
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": "another passphrase"},
        headers=headers,
    )
    assert wrong.status_code == 422
    assert entries("auth.password_changed") == []  # a refused change is no change
    changed = browser.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another passphrase"},
        headers=headers | rid("pw-1"),
    )
    assert changed.status_code == 204
    assert_from_request(one("auth.password_changed"), req("pw-1"), user.id)
    assert_no_secret(PASSWORD, "another passphrase", created.json["token"])


def test_admins_grant_and_revoke_roles(app, browser):
    admin = make_user(app, roles=("admin",))
    member = make_user(app)
    headers = bearer(make_token(app, admin, ["users:read", "users:write"]))
    granted = browser.post(
        f"/api/v1/users/{member.id}/roles", json={"role": "admin"}, headers=headers | rid("g-1")
    )
    assert granted.status_code == 200
    row = one("auth.role_granted")
    assert_from_request(row, req("g-1"), admin.id)
    assert (row.target, row.details) == (member.id, {"role": "admin"})
    browser.post(f"/api/v1/users/{member.id}/roles", json={"role": "admin"}, headers=headers)
    assert len(entries("auth.role_granted")) == 1  # had it already: nothing happened

    revoked = browser.delete(f"/api/v1/users/{member.id}/roles/admin", headers=headers | rid("v-1"))
    assert revoked.status_code == 200
    row = one("auth.role_revoked")
    assert_from_request(row, req("v-1"), admin.id)
    assert (row.target, row.details) == (member.id, {"role": "admin"})


# --- OAuth apps, and the OAuth server -------------------------------------------------------------


def register_app(browser, headers, **fields):
    body = {
        "name": "Rover",
        "client_type": "confidential",
        "redirect_uris": [REDIRECT],
        "scopes": ["account:read"],
        "grant_types": ["authorization_code", "refresh_token"],
    } | fields
    response = browser.post("/api/v1/apps", json=body, headers=headers | rid("app-new"))
    assert response.status_code == 201, response.json
    return response


def test_app_lifecycle(app, browser, create_user, token_for):
    owner = create_user(email="dev@example.test", password=PASSWORD)
    headers = bearer(token_for(owner, ["apps:read", "apps:write", "account:read"]))
    created = register_app(browser, headers)
    app_id, secret = created.json["id"], created.json["client_secret"]
    row = one("auth.app_created")
    assert_from_request(row, req("app-new"), owner.id)
    assert row.target == app_id
    assert row.details["client_id"] == created.json["client_id"]
    assert row.details["redirect_uris"] == [REDIRECT]

    updated = browser.patch(
        f"/api/v1/apps/{app_id}",
        json={"name": "Rover 2"},
        headers=headers | rid("app-upd") | {"If-Match": created.headers["ETag"]},
    )
    assert updated.status_code == 200
    row = one("auth.app_updated")
    assert_from_request(row, req("app-upd"), owner.id)
    assert row.details["changes"] == {"name": "Rover 2"}

    rotated = browser.post(f"/api/v1/apps/{app_id}/secret", headers=headers | rid("app-rot"))
    assert rotated.status_code == 200
    row = one("auth.app_secret_rotated")
    assert_from_request(row, req("app-rot"), owner.id)
    assert row.target == app_id and "previous_secret_valid_until" in row.details

    deleted = browser.delete(
        f"/api/v1/apps/{app_id}",
        headers=headers | rid("app-del") | {"If-Match": rotated.headers["ETag"]},
    )
    assert deleted.status_code == 204
    row = one("auth.app_deleted")
    assert_from_request(row, req("app-del"), owner.id)
    assert row.details["tokens_revoked"] == 0
    assert_no_secret(secret, rotated.json["client_secret"])


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def authorize_url(client_id: str, challenge: str) -> str:
    return "/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "account:read",
            "state": "st4te",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


def sign_in(browser, url, address, password, request_id):
    page = browser.get(url)
    return browser.post(
        url,
        data={
            "csrf_token": csrf_of(page.text),
            "action": "sign_in",
            "email": address,
            "password": password,
        },
        headers=rid(request_id),
    )


def basic(oauth_app) -> dict[str, str]:
    raw = f"{oauth_app['client_id']}:{oauth_app['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def test_sign_in_failures_and_success(app, browser, create_user, token_for):
    owner = create_user(email="dev@example.test", password=PASSWORD)
    create_user(email="off@example.test", password=PASSWORD, status="disabled")
    create_user(email="new@example.test", password=PASSWORD, status="pending")
    oauth_app = register_app(browser, bearer(token_for(owner, ["apps:write", "account:read"]))).json
    url = authorize_url(oauth_app["client_id"], create_s256_code_challenge("v" * 50))

    attempts = [
        ("dev@example.test", "wrong password!", "wrong_password", owner.id),
        ("ghost@example.test", PASSWORD, "unknown_account", None),
        ("off@example.test", PASSWORD, "disabled", "off"),
        ("new@example.test", PASSWORD, "not_verified", "new"),
    ]
    for n, (address, password, reason, target) in enumerate(attempts):
        response = sign_in(browser, url, address, password, f"fail-{n}")
        assert response.status_code == 200  # the form again, with one message for all
        [row] = [r for r in entries("auth.sign_in_failed") if r.request_id == req(f"fail-{n}")]
        assert_from_request(row, req(f"fail-{n}"), None)
        assert row.details["reason"] == reason
        if target == owner.id:
            assert row.target == owner.id
        elif target is None:
            assert row.target is None and len(row.details["account_digest"]) == 32
        else:
            assert row.target.startswith("usr_")
    assert "ghost@example.test" not in json.dumps([r.details for r in entries()])

    ok = sign_in(browser, url, "dev@example.test", PASSWORD, "ok-1")
    assert ok.status_code == 303
    row = one("auth.signed_in")
    assert_from_request(row, req("ok-1"), owner.id)
    assert (row.target, row.details) == (owner.id, {"method": "password"})

    for n in range(5):  # five failures for the account: it is locked for a while
        sign_in(browser, url, "dev@example.test", f"wrong-{n}-password", f"more-{n}")
    throttled = sign_in(browser, url, "dev@example.test", PASSWORD, "locked-1")
    assert throttled.status_code == 429
    [row] = [r for r in entries("auth.sign_in_failed") if r.request_id == req("locked-1")]
    assert (row.target, row.details) == (owner.id, {"reason": "throttled"})
    assert_no_secret(PASSWORD, "wrong password!", "wrong-0-password")


def test_oauth_consent_tokens_replays_and_revocation(app, browser, create_user, token_for):
    owner = create_user(email="dev@example.test", password=PASSWORD)
    oauth_app = register_app(browser, bearer(token_for(owner, ["apps:write", "account:read"]))).json
    verifier = random.token_urlsafe(48)
    url = authorize_url(oauth_app["client_id"], create_s256_code_challenge(verifier))
    assert sign_in(browser, url, "dev@example.test", PASSWORD, "in-1").status_code == 303
    page = browser.get(url)
    approved = browser.post(
        url, data={"csrf_token": csrf_of(page.text), "action": "approve"}, headers=rid("yes-1")
    )
    assert approved.status_code == 302
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    row = one("auth.app_authorized")
    assert_from_request(row, req("yes-1"), owner.id)
    assert (row.target, row.details["scope"]) == (oauth_app["id"], "account:read")

    token_client = browser  # the app's server, calling the token endpoint
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    issued = token_client.post(
        "/oauth/token", data=exchange, headers=basic(oauth_app) | rid("tok-1")
    )
    assert issued.status_code == 200, issued.json
    [row] = [r for r in entries("auth.token_created") if r.request_id == req("tok-1")]
    assert_from_request(row, req("tok-1"), owner.id)
    assert row.target.startswith("tok_")
    assert row.details | {"family_id": None} == {
        "kind": "oauth",
        "grant_type": "authorization_code",
        "client_id": oauth_app["client_id"],
        "user_id": owner.id,
        "scope": "account:read",
        "family_id": None,
        "with_refresh_token": True,
    }

    refresh = {"grant_type": "refresh_token", "refresh_token": issued.json["refresh_token"]}
    renewed = token_client.post(
        "/oauth/token", data=refresh, headers=basic(oauth_app) | rid("tok-2")
    )
    assert renewed.status_code == 200
    [row] = [r for r in entries("auth.token_created") if r.request_id == req("tok-2")]
    assert row.details["grant_type"] == "refresh_token"

    replay = token_client.post("/oauth/token", data=refresh, headers=basic(oauth_app) | rid("rp-1"))
    assert replay.status_code == 400
    [row] = [r for r in entries("auth.token_revoked") if r.request_id == req("rp-1")]
    assert row.details["reason"] == "refresh_token_replayed"
    assert row.details["tokens_revoked"] >= 1  # every live token of the family
    assert row.address == "127.0.0.1" and row.user_agent == UA

    again = token_client.post("/oauth/token", data=exchange, headers=basic(oauth_app) | rid("rp-2"))
    assert again.status_code == 400
    [row] = [r for r in entries("auth.token_revoked") if r.request_id == req("rp-2")]
    assert row.details["reason"] == "authorization_code_replayed"
    assert row.target.startswith("fam_")

    # A fresh grant, revoked by the app (RFC 7009).
    verifier = random.token_urlsafe(48)
    url = authorize_url(oauth_app["client_id"], create_s256_code_challenge(verifier))
    url += "&prompt=consent"  # allowed before: without it, the app would get a code at once
    page = browser.get(url)
    approved = browser.post(url, data={"csrf_token": csrf_of(page.text), "action": "approve"})
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    fresh = token_client.post(
        "/oauth/token",
        data=exchange | {"code": code, "code_verifier": verifier},
        headers=basic(oauth_app),
    )
    assert fresh.status_code == 200
    revoked = token_client.post(
        "/oauth/revoke",
        data={"token": fresh.json["access_token"]},
        headers=basic(oauth_app) | rid("rv-1"),
    )
    assert revoked.status_code == 200
    [row] = [r for r in entries("auth.token_revoked") if r.request_id == req("rv-1")]
    assert_from_request(row, req("rv-1"), owner.id)
    assert row.details["reason"] == "revoked_by_client" and row.details["tokens_revoked"] == 1

    machine = register_app(
        browser,
        bearer(token_for(owner, ["apps:write", "account:read"])),
        redirect_uris=[],
        grant_types=["client_credentials"],
    ).json
    for_itself = token_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "account:read"},
        headers=basic(machine) | rid("cc-1"),
    )
    assert for_itself.status_code == 200, for_itself.json
    [row] = [r for r in entries("auth.token_created") if r.request_id == req("cc-1")]
    assert_from_request(row, req("cc-1"), machine["client_id"])  # the app acted for itself
    assert (row.details["user_id"], row.details["with_refresh_token"]) == (None, False)

    page = browser.get(url)
    denied = browser.post(
        url, data={"csrf_token": csrf_of(page.text), "action": "deny"}, headers=rid("no-1")
    )
    assert denied.status_code == 302
    assert_from_request(one("auth.app_authorization_denied"), req("no-1"), owner.id)

    assert_no_secret(
        PASSWORD,
        code,
        verifier,
        oauth_app["client_secret"],
        issued.json["access_token"],
        issued.json["refresh_token"],
        renewed.json["access_token"],
        fresh.json["access_token"],
        machine["client_secret"],
        for_itself.json["access_token"],
    )


def test_a_temporary_password_changed_on_the_oauth_page(app, browser, runner, create_user):
    owner = create_user(email="dev@example.test", password=PASSWORD)
    oauth_app = register_app(
        browser, bearer(make_token(app, owner, ["apps:write", "account:read"]))
    ).json
    reset = runner.invoke(args=["users", "reset-password", "dev@example.test", "--temporary"])
    temporary = reset.output.strip().splitlines()[-1]
    url = authorize_url(oauth_app["client_id"], create_s256_code_challenge("v" * 50))
    assert sign_in(browser, url, "dev@example.test", temporary, "tmp-1").status_code == 303
    page = browser.get(url)
    changed = browser.post(
        url,
        data={
            "csrf_token": csrf_of(page.text),
            "action": "change_password",
            "current_password": temporary,
            "new_password": "my own passphrase",
        },
        headers=rid("own-1"),
    )
    assert changed.status_code == 303
    assert_from_request(one("auth.password_changed"), req("own-1"), owner.id)
    assert_no_secret(temporary, "my own passphrase")


# --- The operators' commands ---------------------------------------------------------------------


def test_every_operator_override_is_audited_as_theirs(app, runner):
    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(args=list(args), input=stdin)
        assert result.exit_code == 0, result.output
        return result.output

    def last(action: str) -> AuditRecord:
        row = entries(action)[-1]
        assert (row.actor_id, row.address) == (OPERATOR, "local")
        return row

    temporary = run("users", "create", "root@example.test", "--admin").strip().splitlines()[-1]
    created = last("auth.user_created")
    user_id = created.target
    assert created.details == {
        "email": "root@example.test",
        "status": "active",
        "roles": ["member", "admin"],
        "temporary_password": True,
    }
    # A second admin: root may then lose the role (the last active admin may not).
    run("users", "create", "ops@example.test", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert last("auth.user_created").details["temporary_password"] is False

    token = run("tokens", "create", "root@example.test", "--scope", "account:read")
    secret = token.strip().splitlines()[-1]
    token_id = token.split()[1]
    row = last("auth.token_created")
    assert (row.target, row.details["user_id"]) == (token_id, user_id)

    run("users", "reset-password", "root@example.test")
    assert last("auth.password_reset_requested").target == user_id
    again = run("users", "reset-password", "root@example.test", "--temporary")
    assert last("auth.password_reset").details == {"method": "temporary_password"}
    revoked_by_reset = last("auth.token_revoked")
    assert revoked_by_reset.details["reason"] == "password_set"

    second = run("tokens", "create", "root@example.test", "--scope", "account:read")
    second_id = second.split()[1]
    run("tokens", "revoke", second_id)
    row = last("auth.token_revoked")
    assert (row.target, row.details["kind"]) == (second_id, "personal_access_token")
    run("tokens", "create", "root@example.test", "--scope", "account:read")
    run("tokens", "revoke", "--user", "root@example.test")
    row = last("auth.token_revoked")
    assert (row.target, row.details["reason"]) == (user_id, "operator")

    run("users", "revoke-role", "root@example.test", "admin")
    assert last("auth.role_revoked").details == {"role": "admin"}
    run("users", "grant-role", "root@example.test", "admin")
    assert last("auth.role_granted").details == {"role": "admin"}
    run("tokens", "create", "root@example.test", "--scope", "account:read")
    run("users", "disable", "root@example.test")
    assert last("auth.user_disabled").details == {"previous_status": "active"}
    assert last("auth.token_revoked").details["reason"] == "user_disabled"
    run("users", "enable", "root@example.test")
    assert last("auth.user_enabled").details == {"previous_status": "disabled"}

    assert runner.invoke(args=["users", "grant-role", "root@example.test", "wizard"]).exit_code == 1
    assert all(r.details.get("role") != "wizard" for r in entries())  # refused: not recorded
    assert_no_secret(PASSWORD, temporary, secret, again.strip().splitlines()[-1])
