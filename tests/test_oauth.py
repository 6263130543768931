"""The OAuth 2 authorization server, through real HTTP exchanges (RFC 6749, 7636, 9700)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import re
import secrets as random
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import sqlalchemy as sa
import time_machine
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from mars_server.auth.models import AuthorizationCode, OAuthToken
from mars_server.db import db
from tests.mailbox import development_mail as mailbox
from tests.mailbox import link_token

PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example/callback"
SCOPES = "account:read"


@pytest.fixture
def owner(create_user):
    return create_user(email="dev@example.test", password=PASSWORD)


@pytest.fixture
def register(app, owner, auth_headers):
    """``register(**fields)``: an OAuth app of ``owner``, registered through the API with a
    token that has the scopes the app is allowed (no credential gives more than it has)."""

    def make(**fields):
        body = {
            "name": "Rover",
            "client_type": "confidential",
            "redirect_uris": [REDIRECT],
            "scopes": ["account:read", "account:write"],
            "grant_types": ["authorization_code", "refresh_token"],
        } | fields
        headers = auth_headers(owner, ["apps:read", "apps:write", *body["scopes"]])
        response = app.test_client().post("/api/v1/apps", json=body, headers=headers)
        assert response.status_code == 201, response.json
        return response.json

    return make


def pkce():
    verifier = random.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_url(client_id, challenge, **overrides):
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | overrides
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(browser, url, email="dev@example.test", password=PASSWORD):
    page = browser.get(url)
    assert page.status_code == 200, page.text
    return browser.post(
        url,
        data={
            "csrf_token": csrf_of(page.text),
            "action": "sign_in",
            "email": email,
            "password": password,
        },
    )


def approve(browser, url, action="approve", redirect=REDIRECT):
    """Sign in (if needed), answer the consent page; return the redirect's query."""
    page = browser.get(url)
    if 'value="sign_in"' in page.text:
        assert sign_in(browser, url).status_code == 303
        page = browser.get(url)
    if page.status_code == 302 and action == "approve":  # allowed before: no consent page
        response = page
    else:
        assert page.status_code == 200, page.text
        response = browser.post(url, data={"csrf_token": csrf_of(page.text), "action": action})
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(redirect + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def change_password_on_page(browser, url, csrf_token, current):
    """Answer the page that asks a user with a one-time password for a new one."""
    return browser.post(
        url,
        data={
            "csrf_token": csrf_token,
            "action": "change_password",
            "current_password": current,
            "new_password": "a brand new passphrase",
        },
    )


def basic(app_json):
    raw = f"{app_json['client_id']}:{app_json['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def get_code(app, oauth_app, **overrides):
    verifier, challenge = pkce()
    browser = app.test_client()
    query = approve(browser, authorize_url(oauth_app["client_id"], challenge, **overrides))
    assert query["state"] == "st4te"
    return query["code"], verifier


def exchange(client, oauth_app, code, verifier, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    } | extra
    data = {k: v for k, v in data.items() if v is not None}
    headers = basic(oauth_app) if oauth_app.get("client_secret") else {}
    if not headers:
        data["client_id"] = oauth_app["client_id"]
    return client.post("/oauth/token", data=data, headers=headers)


def refresh(client, oauth_app, refresh_token):
    return client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=basic(oauth_app),
    )


def me(client, access_token):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})


# --- The whole flow, driven by authlib's own client against a live server ----------------------


def test_authorization_code_flow_with_authlibs_client(live_server, register, owner):
    oauth_app = register()
    metadata = requests.get(f"{live_server}/.well-known/oauth-authorization-server", timeout=10)
    endpoints = metadata.json()
    assert endpoints["code_challenge_methods_supported"] == ["S256"]
    session = OAuth2Session(
        oauth_app["client_id"],
        oauth_app["client_secret"],
        scope=SCOPES,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = random.token_urlsafe(48)
    url, state = session.create_authorization_url(
        endpoints["authorization_endpoint"], code_verifier=verifier
    )

    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200
    assert "Rover" in page.text and "MARS" in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    signed_in = browser.post(
        url,
        data={
            "csrf_token": csrf_of(page.text),
            "action": "sign_in",
            "email": owner.email,
            "password": PASSWORD,
        },
        timeout=10,
    )  # follows the 303 to the consent page
    assert "Allow" in signed_in.text and "account:read" in signed_in.text
    cookie = next(c for c in browser.cookies if c.name == "mars_oauth")
    assert cookie.has_nonstandard_attr("HttpOnly") or "httponly" in str(cookie._rest).lower()
    consent = browser.post(
        url,
        data={"csrf_token": csrf_of(signed_in.text), "action": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    assert consent.status_code == 302
    callback = consent.headers["Location"]
    assert callback.startswith(REDIRECT + "?")

    token = session.fetch_token(
        endpoints["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    assert token["token_type"] == "Bearer"
    assert token["scope"] == SCOPES
    assert 0 < token["expires_in"] <= 15 * 60
    me_response = session.get(f"{live_server}/api/v1/me", timeout=10)
    assert me_response.status_code == 200
    assert me_response.json()["id"] == owner.id

    first_refresh = token["refresh_token"]
    renewed = session.refresh_token(endpoints["token_endpoint"], refresh_token=first_refresh)
    assert renewed["refresh_token"] != first_refresh
    assert renewed["access_token"] != token["access_token"]
    assert session.get(f"{live_server}/api/v1/me", timeout=10).status_code == 200

    introspected = session.post(
        endpoints["introspection_endpoint"],
        data={"token": renewed["access_token"]},
        auth=(oauth_app["client_id"], oauth_app["client_secret"]),
        timeout=10,
    ).json()
    assert introspected["active"] is True
    assert introspected["sub"] == owner.id
    assert introspected["client_id"] == oauth_app["client_id"]
    assert introspected["scope"] == SCOPES
    old = session.post(
        endpoints["introspection_endpoint"],
        data={"token": first_refresh, "token_type_hint": "refresh_token"},
        auth=(oauth_app["client_id"], oauth_app["client_secret"]),
        timeout=10,
    ).json()
    assert old == {"active": False}

    revoked = session.revoke_token(endpoints["revocation_endpoint"], renewed["refresh_token"])
    assert revoked.status_code == 200
    gone = requests.get(
        f"{live_server}/api/v1/me",
        headers={"Authorization": f"Bearer {renewed['access_token']}"},
        timeout=10,
    )
    assert gone.status_code == 401
    after = session.post(
        endpoints["introspection_endpoint"],
        data={"token": renewed["access_token"]},
        auth=(oauth_app["client_id"], oauth_app["client_secret"]),
        timeout=10,
    ).json()
    assert after == {"active": False}


def test_metadata(app):
    response = app.test_client().get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json
    assert body["issuer"] == "http://localhost"
    assert body["token_endpoint"] == "http://localhost/oauth/token"
    assert body["end_session_endpoint"] == "http://localhost/oauth/logout"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["response_types_supported"] == ["code"]
    assert set(body["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert {"client_secret_basic", "client_secret_post", "none"} == set(
        body["token_endpoint_auth_methods_supported"]
    )
    assert {"account:read", "apps:write"} <= set(body["scopes_supported"])
    assert set(body["scopes_supported"]) == set(app.extensions["mars"].scopes)


# --- RFC 9700 --------------------------------------------------------------------------------


def test_a_code_works_once_and_its_reuse_revokes_what_it_issued(app, register):
    oauth_app = register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    first = exchange(client, oauth_app, code, verifier)
    assert first.status_code == 200, first.json
    assert first.headers["Cache-Control"] == "no-store"
    assert me(client, first.json["access_token"]).status_code == 200
    second = exchange(client, oauth_app, code, verifier)
    assert second.status_code == 400
    assert second.json["error"] == "invalid_grant"
    assert second.mimetype == "application/json"
    assert me(client, first.json["access_token"]).status_code == 401
    assert refresh(client, oauth_app, first.json["refresh_token"]).json["error"] == "invalid_grant"


@pytest.mark.parametrize("client_type", ["confidential", "public"])
def test_pkce_is_required_from_every_client(app, register, client_type):
    oauth_app = register(client_type=client_type)
    browser = app.test_client()
    for overrides in (
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
    ):
        url = authorize_url(oauth_app["client_id"], pkce()[1], **overrides)
        response = browser.get(url)
        assert response.status_code == 302, overrides
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query["error"] == ["invalid_request"], overrides
        assert query["state"] == ["st4te"]


@pytest.mark.parametrize("client_type", ["confidential", "public"])
def test_a_missing_or_wrong_verifier_fails(app, register, client_type):
    oauth_app = register(client_type=client_type)
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    missing = exchange(client, oauth_app, code, None)
    assert missing.status_code == 400
    assert missing.json["error"] == "invalid_request"
    code, verifier = get_code(app, oauth_app)
    wrong = exchange(client, oauth_app, code, pkce()[0])
    assert wrong.json["error"] == "invalid_grant"
    code, verifier = get_code(app, oauth_app)
    plain = exchange(client, oauth_app, code, create_s256_code_challenge(verifier))
    assert plain.json["error"] == "invalid_grant"  # the challenge itself is no verifier
    code, verifier = get_code(app, oauth_app)
    assert exchange(client, oauth_app, code, verifier).status_code == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/",
        "https://APP.example/callback",
        "https://app.example/Callback",
        REDIRECT + "?extra=1",
        "https://app.example:8443/callback",
        "https://app.example@evil.example/callback",
        "https://evil.example/callback",
        "http://app.example/callback",
        REDIRECT + "#frag",
        "",
    ],
)
def test_redirect_uri_must_match_exactly(app, register, redirect_uri):
    oauth_app = register()
    response = app.test_client().get(
        authorize_url(oauth_app["client_id"], pkce()[1], redirect_uri=redirect_uri)
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "MARS cannot continue" in response.text
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_code_is_bound_to_its_redirect_uri_and_client(app, register):
    oauth_app, other = register(), register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    assert (
        exchange(client, oauth_app, code, verifier, redirect_uri=REDIRECT + "/").json["error"]
        == "invalid_grant"
    )
    code, verifier = get_code(app, oauth_app)
    assert exchange(client, other, code, verifier).json["error"] == "invalid_grant"
    # the other client could not burn it: the rightful one still can use it
    assert exchange(client, oauth_app, code, verifier).status_code == 200


def test_a_replayed_refresh_token_kills_the_family(app, register):
    oauth_app = register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    first = exchange(client, oauth_app, code, verifier).json
    second = refresh(client, oauth_app, first["refresh_token"])
    assert second.status_code == 200
    third = refresh(client, oauth_app, second.json["refresh_token"])
    assert third.status_code == 200
    assert me(client, third.json["access_token"]).status_code == 200
    replay = refresh(client, oauth_app, first["refresh_token"])
    assert replay.status_code == 400
    assert replay.json["error"] == "invalid_grant"
    assert me(client, third.json["access_token"]).status_code == 401
    assert refresh(client, oauth_app, third.json["refresh_token"]).json["error"] == "invalid_grant"


def test_the_consent_can_be_denied(app, register):
    oauth_app = register()
    query = approve(app.test_client(), authorize_url(oauth_app["client_id"], pkce()[1]), "deny")
    assert query["error"] == "access_denied"
    assert query["state"] == "st4te"
    assert "code" not in query


def test_password_and_implicit_grants_are_refused(app, register, owner):
    oauth_app = register()
    client = app.test_client()
    password = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": owner.email, "password": PASSWORD},
        headers=basic(oauth_app),
    )
    assert password.status_code == 400
    assert password.json["error"] == "unsupported_grant_type"
    implicit = client.get(authorize_url(oauth_app["client_id"], pkce()[1], response_type="token"))
    assert implicit.status_code == 302
    query = parse_qs(urlsplit(implicit.headers["Location"]).query)
    assert query["error"] == ["unsupported_response_type"]


def test_client_credentials_for_confidential_clients_only(app, register):
    machine = register(
        grant_types=["client_credentials"], redirect_uris=[], scopes=["account:read", "apps:read"]
    )
    client = app.test_client()
    issued = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "apps:read"},
        headers=basic(machine),
    )
    assert issued.status_code == 200, issued.json
    assert "refresh_token" not in issued.json
    assert issued.json["scope"] == "apps:read"
    # a valid token (not 401), but the app's, not a person's: it has no apps of its own
    listed = client.get(
        "/api/v1/apps", headers={"Authorization": f"Bearer {issued.json['access_token']}"}
    )
    assert listed.status_code == 403
    described = client.post(
        "/oauth/introspect", data={"token": issued.json["access_token"]}, headers=basic(machine)
    ).json
    assert described["active"] is True
    assert "sub" not in described
    too_much = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "users:write"},
        headers=basic(machine),
    )
    assert too_much.json["error"] == "invalid_scope"
    wrong_secret = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(machine | {"client_secret": "mars_cs_wrong"}),
    )
    assert wrong_secret.status_code == 401
    assert wrong_secret.json["error"] == "invalid_client"
    public = register(client_type="public")
    refused = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": public["client_id"]}
    )
    assert refused.status_code in (400, 401)
    assert refused.json["error"] in ("invalid_client", "unauthorized_client")


def test_client_secret_post_works(app, register):
    oauth_app = register(grant_types=["client_credentials"], redirect_uris=[])
    issued = app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": oauth_app["client_id"],
            "client_secret": oauth_app["client_secret"],
        },
    )
    assert issued.status_code == 200


def test_public_clients_use_pkce_without_a_secret(app, register):
    oauth_app = register(client_type="public")
    assert oauth_app["client_secret"] is None
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    issued = exchange(client, oauth_app, code, verifier)
    assert issued.status_code == 200, issued.json
    renewed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": issued.json["refresh_token"],
            "client_id": oauth_app["client_id"],
        },
    )
    assert renewed.status_code == 200
    revoked = client.post(
        "/oauth/revoke",
        data={"token": renewed.json["access_token"], "client_id": oauth_app["client_id"]},
    )
    assert revoked.status_code == 200
    assert me(client, renewed.json["access_token"]).status_code == 401
    # introspection is for confidential clients
    introspect = client.post(
        "/oauth/introspect",
        data={"token": renewed.json["access_token"], "client_id": oauth_app["client_id"]},
    )
    assert introspect.status_code in (400, 401)


def test_a_client_introspects_only_its_own_tokens(app, register):
    oauth_app, other = register(), register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    access = exchange(client, oauth_app, code, verifier).json["access_token"]
    mine = client.post("/oauth/introspect", data={"token": access}, headers=basic(oauth_app))
    assert mine.json["active"] is True
    theirs = client.post("/oauth/introspect", data={"token": access}, headers=basic(other))
    assert theirs.json == {"active": False}
    unknown = client.post("/oauth/introspect", data={"token": "nope"}, headers=basic(other))
    assert unknown.json == {"active": False}


def test_scopes_are_limited_to_the_apps(app, register):
    oauth_app = register(scopes=["account:read"])
    response = app.test_client().get(
        authorize_url(oauth_app["client_id"], pkce()[1], scope="account:read users:write")
    )
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_scope"]


# --- The sign-in page ------------------------------------------------------------------------


def test_sign_in_needs_the_csrf_token_and_the_right_password(app, register):
    oauth_app = register()
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    page = browser.get(url)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    forged = browser.post(
        url, data={"action": "sign_in", "email": "dev@example.test", "password": PASSWORD}
    )
    assert forged.status_code == 400
    wrong = sign_in(browser, url, password="not the password")
    assert wrong.status_code == 200
    assert "The e-mail address or the password is wrong." in wrong.text
    consent_attempt = browser.post(
        url, data={"csrf_token": csrf_of(wrong.text), "action": "approve"}
    )
    assert consent_attempt.status_code == 200  # not signed in: the sign-in page again
    assert 'value="sign_in"' in consent_attempt.text


def test_secure_cookie_over_https(app, register):
    oauth_app = register()
    page = app.test_client().get(
        authorize_url(oauth_app["client_id"], pkce()[1]), base_url="https://localhost"
    )
    assert "Secure" in page.headers["Set-Cookie"]


def test_too_many_failed_sign_ins_are_429(app, register):
    oauth_app = register()
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    for _ in range(5):
        assert sign_in(browser, url, password="wrong password!").status_code == 200
    locked = sign_in(browser, url)
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Try again" in locked.text


def test_users_who_must_change_their_password_get_no_code(app, register, db):
    from mars_server.auth import accounts

    oauth_app = register()
    user = accounts.user_by_email("dev@example.test")
    temporary = accounts.temporary_password(user)
    db.session.commit()
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    assert sign_in(browser, url, password=temporary).status_code == 303
    page = browser.get(url)
    assert "Change your MARS password first" in page.text
    approve_attempt = browser.post(
        url, data={"csrf_token": csrf_of(page.text), "action": "approve"}
    )
    assert approve_attempt.status_code == 200
    assert "Location" not in approve_attempt.headers
    changed = change_password_on_page(browser, url, csrf_of(page.text), temporary)
    assert changed.status_code == 303
    assert "Allow" in browser.get(url).text


# --- Expiry with a frozen clock --------------------------------------------------------------


def test_codes_access_and_refresh_tokens_expire(app, register):
    oauth_app = register()
    client = app.test_client()
    with time_machine.travel(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC), tick=False) as clock:
        code, verifier = get_code(app, oauth_app)
        clock.shift(dt.timedelta(seconds=61))
        late = exchange(client, oauth_app, code, verifier)
        assert late.json["error"] == "invalid_grant"

        code, verifier = get_code(app, oauth_app)
        clock.shift(dt.timedelta(seconds=59))
        token = exchange(client, oauth_app, code, verifier).json
        assert token["expires_in"] == 15 * 60
        clock.shift(dt.timedelta(minutes=14, seconds=59))
        assert me(client, token["access_token"]).status_code == 200
        clock.shift(dt.timedelta(seconds=2))
        assert me(client, token["access_token"]).status_code == 401
        assert client.post(
            "/oauth/introspect", data={"token": token["access_token"]}, headers=basic(oauth_app)
        ).json == {"active": False}
        renewed = refresh(client, oauth_app, token["refresh_token"])
        assert renewed.status_code == 200
        clock.shift(dt.timedelta(days=30, seconds=1))
        expired = refresh(client, oauth_app, renewed.json["refresh_token"])
        assert expired.json["error"] == "invalid_grant"


# --- No secret in the clear ------------------------------------------------------------------


def test_no_secret_is_stored_or_logged_in_the_clear(app, db, register, owner, token_for, caplog):
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "mars")
    old_stream = handler.setStream(stream)
    try:
        pat = token_for(owner, ["account:read"])
        oauth_app = register()
        machine = register(grant_types=["client_credentials"], redirect_uris=[])
        client = app.test_client()
        code, verifier = get_code(app, oauth_app)
        first = exchange(client, oauth_app, code, verifier).json
        second = refresh(client, oauth_app, first["refresh_token"]).json
        refresh(client, oauth_app, first["refresh_token"])  # a replay, logged
        exchange(client, oauth_app, code, verifier)  # a second use, logged
        machine_token = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(machine)
        ).json
        client.post(
            "/oauth/introspect", data={"token": second["access_token"]}, headers=basic(oauth_app)
        )
        client.post(
            "/oauth/revoke", data={"token": second["refresh_token"]}, headers=basic(oauth_app)
        )
        # The e-mailed links, a one-time password, a new password and a webhook secret.
        new_password = "a passphrase of a newcomer"
        client.post(
            "/api/v1/accounts", json={"email": "new@example.test", "password": new_password}
        )
        client.post("/api/v1/accounts/password-reset", json={"email": "dev@example.test"})
        links = [link_token(message) for message in mailbox(app)]
        temporary = app.test_cli_runner().invoke(
            args=["users", "reset-password", "new@example.test", "--temporary"]
        )
        one_time = temporary.output.strip().splitlines()[-1]
        hook = client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example/in", "events": ["project.created"]},
            headers={
                "Authorization": f"Bearer {token_for(owner, ['webhooks:write', 'projects:read'])}"
            },
        ).json
    finally:
        handler.setStream(old_stream)

    assert len(links) == 2
    assert hook["secret"].startswith("whsec_")
    secret_values = {
        pat,
        PASSWORD,
        new_password,
        *links,
        one_time,
        hook["secret"],
        hook["secret"].removeprefix("whsec_"),
        code,
        verifier,
        oauth_app["client_secret"],
        machine["client_secret"],
        machine_token["access_token"],
        *(first[k] for k in ("access_token", "refresh_token")),
        *(second[k] for k in ("access_token", "refresh_token")),
    }
    dump = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthToken)) >= 3
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuthorizationCode)) == 1
    everything = "\n".join(dump) + stream.getvalue() + caplog.text
    assert "refresh token replayed" in everything
    for value in secret_values:
        assert value not in everything
        assert json.dumps(value)[1:-1] not in everything


def test_an_app_acting_for_itself_has_no_me(app, db):
    import datetime as _dt

    from mars_server.auth import secrets as mars_secrets
    from mars_server.auth.models import OAuthToken
    from mars_server.db import utcnow

    token = mars_secrets.new_opaque_token()
    db.session.add(
        OAuthToken(
            client_id="svc",
            user_id=None,
            scope="account:read",
            access_digest=mars_secrets.digest(token),
            family_id="fam",
            access_expires_at=utcnow() + _dt.timedelta(minutes=5),
        )
    )
    db.session.commit()
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


@pytest.mark.mars_fresh_app  # it adds a route of its own
def test_the_oauth_pages_leave_the_apps_own_session_alone(app, register):
    import flask

    @app.route("/other/count")
    def count():
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    browser = app.test_client()
    assert browser.get("/other/count").text == "1"
    assert browser.get("/other/count").text == "2"  # the app's session cookie comes back
    app_cookie = browser.get_cookie("session")
    assert app_cookie is not None and app_cookie.path == "/"

    oauth_app = register()
    _, challenge = pkce()
    page = browser.get(authorize_url(oauth_app["client_id"], challenge))
    assert page.status_code == 200 and csrf_of(page.text)
    pages_cookie = browser.get_cookie("mars_oauth", path="/oauth")
    assert pages_cookie is not None and pages_cookie.http_only
    assert browser.get("/other/count").text == "3"  # untouched by the sign-in page
    assert app.config["SESSION_COOKIE_NAME"] == "session"


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_native_app_on_loopback_may_come_back_on_any_port(app, register, host):
    registered = f"http://{host}/callback"
    oauth_app = register(client_type="public", redirect_uris=[registered])
    used = f"http://{host}:54321/callback"
    verifier, challenge = pkce()
    query = approve(
        app.test_client(),
        authorize_url(oauth_app["client_id"], challenge, redirect_uri=used),
        redirect=used,
    )
    issued = app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": used,
            "code_verifier": verifier,
            "client_id": oauth_app["client_id"],
        },
    )
    assert issued.status_code == 200, issued.json


@pytest.mark.parametrize(
    ("client_type", "registered", "used"),
    [
        # Only a public client gets the leeway; a confidential one registers its port.
        ("confidential", "http://127.0.0.1/callback", "http://127.0.0.1:54321/callback"),
        # localhost is a name anyone's resolver may answer (RFC 8252 section 8.3).
        ("public", "http://localhost/callback", "http://localhost:54321/callback"),
        # A port once registered is the port.
        ("public", "http://127.0.0.1:5000/callback", "http://127.0.0.1:5001/callback"),
        # The rest of the address still matches exactly.
        ("public", "http://127.0.0.1/callback", "http://127.0.0.1:54321/callback/"),
        ("public", "http://127.0.0.1/callback", "http://127.0.0.1:54321/Callback"),
        ("public", "http://127.0.0.1/callback", "http://127.0.0.1:54321/callback?x=1"),
        ("public", "http://127.0.0.1/callback", "http://127.0.0.1:54321@evil.example/callback"),
        ("public", "http://127.0.0.1/callback", "https://127.0.0.1:54321/callback"),
        ("public", "http://127.0.0.1/callback", "http://127.0.0.2:54321/callback"),
    ],
)
def test_no_other_port_leeway(app, register, client_type, registered, used):
    oauth_app = register(client_type=client_type, redirect_uris=[registered])
    response = app.test_client().get(
        authorize_url(oauth_app["client_id"], pkce()[1], redirect_uri=used)
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


# --- Remembered consent --------------------------------------------------------------------------


def consent_page_shown(browser, url):
    page = browser.get(url)
    if page.status_code == 302:
        return False
    assert page.status_code == 200 and 'value="approve"' in page.text, page.text
    return True


def test_a_confidential_app_is_not_asked_twice_for_what_was_allowed(app, register):
    oauth_app = register()
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    assert sign_in(browser, url).status_code == 303
    assert consent_page_shown(browser, url)
    approve(browser, url)

    again = browser.get(authorize_url(oauth_app["client_id"], pkce()[1]))
    assert again.status_code == 302  # straight back to the app, with a code
    assert again.headers["Location"].startswith(REDIRECT + "?code=")
    # Asking for more, or prompt=consent, shows the page again.
    more = authorize_url(oauth_app["client_id"], pkce()[1], scope="account:read account:write")
    assert consent_page_shown(browser, more)
    forced = authorize_url(oauth_app["client_id"], pkce()[1], prompt="consent")
    assert consent_page_shown(browser, forced)


def test_a_public_app_is_asked_every_time(app, register):
    oauth_app = register(client_type="public")
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    approve(browser, url)
    assert consent_page_shown(browser, authorize_url(oauth_app["client_id"], pkce()[1]))


def test_taking_back_an_authorization(app, register, owner, auth_headers):
    oauth_app = register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    tokens = exchange(client, oauth_app, code, verifier).json
    assert me(client, tokens["access_token"]).status_code == 200
    headers = auth_headers(owner, ["account:read", "account:write"])

    listed = client.get("/api/v1/me/authorizations", headers=headers)
    assert listed.status_code == 200
    [item] = listed.json["items"]
    assert (item["client_id"], item["app_name"], item["scopes"]) == (
        oauth_app["client_id"],
        "Rover",
        ["account:read"],
    )

    gone = client.delete(f"/api/v1/me/authorizations/{oauth_app['client_id']}", headers=headers)
    assert gone.status_code == 204
    assert me(client, tokens["access_token"]).status_code == 401
    assert refresh(client, oauth_app, tokens["refresh_token"]).status_code == 400
    assert client.get("/api/v1/me/authorizations", headers=headers).json["items"] == []
    again = client.delete(f"/api/v1/me/authorizations/{oauth_app['client_id']}", headers=headers)
    assert again.status_code == 404
    assert again.headers["Content-Type"] == "application/problem+json"
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    assert sign_in(browser, url).status_code == 303
    assert consent_page_shown(browser, url), "it must ask again"


def test_deleting_an_app_forgets_its_consents(app, register, owner, auth_headers):
    from mars_server.auth.models import OAuthConsent

    oauth_app = register()
    get_code(app, oauth_app)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthConsent)) == 1
    headers = auth_headers(owner, ["apps:read", "apps:write"])
    client = app.test_client()
    etag = client.get(f"/api/v1/apps/{oauth_app['id']}", headers=headers).headers["ETag"]
    deleted = client.delete(
        f"/api/v1/apps/{oauth_app['id']}", headers={**headers, "If-Match": etag}
    )
    assert deleted.status_code == 204
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OAuthConsent)) == 0


# --- A new password or a disabled account ends everything ------------------------------------


@pytest.mark.parametrize("how", ["password_changed", "disabled"])
def test_a_new_password_or_disabling_ends_oauth_tokens_codes_and_sign_ins(
    app, db, register, owner, how
):
    from mars_server.auth import accounts

    oauth_app = register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    tokens = exchange(client, oauth_app, code, verifier).json
    # A signed-in browser that was allowed before, and a code not exchanged yet.
    browser = app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    approve(browser, url)
    pending_verifier, pending_challenge = pkce()
    pending = approve(browser, authorize_url(oauth_app["client_id"], pending_challenge))
    assert me(client, tokens["access_token"]).status_code == 200

    user = db.session.get(accounts.User, owner.id)
    if how == "password_changed":
        accounts.change_password(user, PASSWORD, "a brand new passphrase")
    else:  # and enabled again: what was revoked stays revoked
        accounts.set_status(user, "disabled")
        db.session.commit()
        accounts.set_status(user, "active")
    db.session.commit()

    assert me(client, tokens["access_token"]).status_code == 401
    assert refresh(client, oauth_app, tokens["refresh_token"]).json["error"] == "invalid_grant"
    late = exchange(client, oauth_app, pending["code"], pending_verifier)
    assert late.json["error"] == "invalid_grant"
    # The browser is signed out: no code without the (new) password.
    page = browser.get(authorize_url(oauth_app["client_id"], pkce()[1]))
    assert page.status_code == 200
    assert 'value="sign_in"' in page.text


def test_the_browser_that_changed_the_password_stays_signed_in(app, db, register):
    from mars_server.auth import accounts

    oauth_app = register()
    user = accounts.user_by_email("dev@example.test")
    temporary = accounts.temporary_password(user)
    db.session.commit()
    browser, elsewhere = app.test_client(), app.test_client()
    url = authorize_url(oauth_app["client_id"], pkce()[1])
    assert sign_in(browser, url, password=temporary).status_code == 303
    assert sign_in(elsewhere, url, password=temporary).status_code == 303
    page = browser.get(url)
    changed = change_password_on_page(browser, url, csrf_of(page.text), temporary)
    assert changed.status_code == 303
    assert 'value="approve"' in browser.get(url).text
    assert 'value="sign_in"' in elsewhere.get(url).text


# --- Throttled client authentication ------------------------------------------------------------


def from_address(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_guessing_a_client_secret_is_throttled_per_client(app, make_app, register):
    """Failed client authentications are counted per client over every endpoint that
    authenticates clients (30 per 15 minutes by default). Past the limit a wrong secret is
    answered 429 in OAuth's format, in every process (the count is in the database); the right
    secret still works, so no one who knows a client_id can lock the app out."""
    machine = register(grant_types=["client_credentials"], redirect_uris=[])
    wrong = basic(machine | {"client_secret": "mars_cs_wrong"})
    client = app.test_client()
    endpoints = [
        ("/oauth/token", {"grant_type": "client_credentials"}),
        ("/oauth/introspect", {"token": "whatever"}),
        ("/oauth/revoke", {"token": "whatever"}),
    ]
    with time_machine.travel(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), tick=False) as clock:
        for n in range(30):  # from as many addresses: only the client's count can lock
            path, data = endpoints[n % 3]
            guess = client.post(path, data=data, headers=wrong, **from_address(f"192.0.2.{n}"))
            assert guess.status_code == 401, (n, guess.json)
            assert guess.json["error"] == "invalid_client"

        other_worker = make_app().test_client()  # the count lives in the database
        for path, data in endpoints:
            locked = other_worker.post(
                path, data=data, headers=wrong, **from_address("198.51.100.7")
            )
            assert locked.status_code == 429, locked.json
            assert locked.mimetype == "application/json"
            assert locked.json == {
                "error": "too_many_attempts",
                "error_description": "Too many failed client authentications; "
                f"try again in {15 * 60} seconds.",
            }
            assert locked.headers["Retry-After"] == str(15 * 60)
            assert locked.headers["Cache-Control"] == "no-store"
        # The same wrong secret sent in the form, beside a Basic header naming nothing: the
        # app is found from every client_id a request names.
        form = other_worker.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": machine["client_id"],
                "client_secret": "mars_cs_wrong",
            },
            **from_address("198.51.100.8"),
        )
        assert form.status_code == 429, form.json
        issued = other_worker.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(machine),
            **from_address("198.51.100.9"),
        )
        assert issued.status_code == 200, issued.json

        clock.shift(dt.timedelta(minutes=15, seconds=1))
        again = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=wrong
        )
        assert again.status_code == 401, again.json


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize(
    "credentials", ["/w==", base64.b64encode(b"\xff:\xff").decode(), "not base64 !", "=="]
)
def test_malformed_basic_credentials_are_invalid_client(app, path, credentials):
    response = app.test_client().post(
        path,
        data={"grant_type": "client_credentials", "token": "whatever"},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert response.status_code in (400, 401), response.text
    assert response.json["error"] == "invalid_client"


def test_guessing_client_secrets_from_one_address_is_throttled(app, register):
    """From one address, 20 failed client authentications (any client, unknown ones too)
    lock that address out for every client; other addresses are not affected."""
    one, other = register(grant_types=["client_credentials"], redirect_uris=[]), register()
    client = app.test_client()
    attacker = from_address("203.0.113.9")
    for n in range(20):
        target = (one, other, {"client_id": "mars_app_unknown"})[n % 3]
        guess = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(target | {"client_secret": f"guess {n}"}),
            **attacker,
        )
        assert guess.status_code == 401
    data = {"grant_type": "client_credentials"}
    locked = client.post("/oauth/token", data=data, headers=basic(one), **attacker)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    elsewhere = client.post(
        "/oauth/token", data=data, headers=basic(one), **from_address("198.51.100.7")
    )
    assert elsewhere.status_code == 200


def test_a_public_app_cannot_be_locked_out_by_others(app, register):
    """A public app has no secret to guess: failures naming it count only per address."""
    public = register(client_type="public")
    client = app.test_client()
    for n in range(31):
        guess = client.post(
            "/oauth/revoke",
            data={"token": "x", "client_id": public["client_id"], "client_secret": f"g{n}"},
            **from_address(f"192.0.2.{n}"),
        )
        assert guess.status_code in (400, 401), guess.json
        assert guess.json["error"] == "invalid_client"
    revoked = client.post("/oauth/revoke", data={"token": "x", "client_id": public["client_id"]})
    assert revoked.status_code == 200, revoked.json


def test_an_unknown_token_type_hint_is_ignored(app, register):
    """RFC 7009 section 2.1, RFC 7662 section 2.1: the hint only orders the search."""
    oauth_app = register()
    client = app.test_client()
    code, verifier = get_code(app, oauth_app)
    tokens = exchange(client, oauth_app, code, verifier).json
    for hint in ("id_token", "refresh_token", "no such kind"):
        described = client.post(
            "/oauth/introspect",
            data={"token": tokens["access_token"], "token_type_hint": hint},
            headers=basic(oauth_app),
        )
        assert described.status_code == 200, (hint, described.json)
        assert described.json["active"] is True
    revoked = client.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "urn:example:unknown"},
        headers=basic(oauth_app),
    )
    assert revoked.status_code == 200, revoked.json
    assert me(client, tokens["access_token"]).status_code == 401


# --- The error page of /oauth/authorize -------------------------------------------------------


GARBLED = ("'None'", "is not supported by the server", "response_type=The")


@pytest.mark.parametrize(
    ("overrides", "says", "hint"),
    [
        (None, "it does not say what the app is asking for", "Send response_type=code"),
        (
            {"response_type": "token", "redirect_uri": "https://evil.example/"},
            "a kind of sign-in that MARS does not offer",
            "Only response_type=code",
        ),
        ({"client_id": None}, "does not say which app sent you", "Send client_id."),
        (
            {"client_id": "mars_app_unknown"},
            "is not registered with MARS, or its registration was deleted",
            "No app has this client_id.",
        ),
        ({"redirect_uri": None}, "does not say where to send you back", "Send redirect_uri"),
        (
            {"redirect_uri": "https://evil.example/callback"},
            "to an address it has not registered, so MARS will not send you there",
            "registered redirect URIs, exactly",
        ),
        ({"state": ["one", "two"]}, "it repeats part of the request", "Send state once."),
    ],
)
def test_the_authorize_error_page_speaks_to_people(app, register, overrides, says, hint):
    oauth_app = register()
    if overrides is None:
        url = "/oauth/authorize"
    else:
        params = {
            "response_type": "code",
            "client_id": oauth_app["client_id"],
            "redirect_uri": REDIRECT,
            "state": "st4te",
            "code_challenge": pkce()[1],
            "code_challenge_method": "S256",
        } | overrides
        url = "/oauth/authorize?" + urlencode(
            {k: v for k, v in params.items() if v is not None}, doseq=True
        )
    page = app.test_client().get(url)
    assert page.status_code == 400
    assert "Location" not in page.headers
    text = " ".join(page.text.split())
    assert says in text
    assert hint in text
    assert not [garbled for garbled in GARBLED if garbled in text], text


def test_a_missing_pkce_challenge_goes_back_to_the_app_in_words(app, register):
    oauth_app = register()
    response = app.test_client().get(
        authorize_url(oauth_app["client_id"], None, code_challenge_method=None)
    )
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["error_description"] == ["PKCE is required: send 'code_challenge' (S256)."]


def test_the_sign_in_pages_forms_may_lead_on_to_the_app_and_beyond(app, register, owner):
    """Browsers apply CSP form-action to every redirect after a form: the sign-in and consent
    forms' answer sends the browser on to the app, and the app on wherever it goes next (a
    site that signs in with MARS sends it on to its own website). Those pages send no
    form-action; the other pages keep it."""
    client = register()
    browser = app.test_client()
    url = authorize_url(client["client_id"], pkce()[1])
    for page in (browser.get(url), sign_in(browser, url), browser.get(url)):
        policy = page.headers["Content-Security-Policy"]
        assert "form-action" not in policy and "frame-ancestors 'none'" in policy, policy
    unrelated = app.test_client().get("/accounts/register")
    assert unrelated.headers["Content-Security-Policy"].endswith("form-action 'self'")
