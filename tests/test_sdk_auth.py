"""Credentials: personal access tokens, client credentials, authorization code + PKCE."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine

from mars_sdk import (
    AuthenticationError,
    AuthorizationCodeFlow,
    ClientCredentials,
    MarsClient,
    OAuthError,
    PermissionDenied,
)
from tests.sdk import PASSWORD

pytest_plugins = ["tests.sdk.fixtures"]
pytestmark = pytest.mark.mars_sdk_live
REDIRECT = "https://rover.example/callback"


def approve_in_browser(url: str, email: str, password: str = PASSWORD) -> str:
    """Do what the user does on MARS's pages: sign in, allow; return the callback URL."""

    def csrf(html: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    with requests.Session() as browser:
        page = browser.get(url, timeout=10)
        consent = browser.post(
            url,
            data={
                "csrf_token": csrf(page.text),
                "action": "sign_in",
                "email": email,
                "password": password,
            },
            timeout=10,
        )
        answer = browser.post(
            url,
            data={"csrf_token": csrf(consent.text), "action": "approve"},
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def register_app(client: MarsClient, **fields):
    return client.apps.create(
        **{
            "name": "Rover",
            "client_type": "confidential",
            "redirect_uris": [REDIRECT],
            "scopes": ["account:read", "projects:read"],
            "grant_types": ["authorization_code", "refresh_token"],
        }
        | fields
    )


def test_a_personal_access_token_is_never_logged(sdk, caplog):
    client = sdk()
    token = client.auth._token
    caplog.set_level(logging.DEBUG, logger="mars_sdk")
    client.me.get()
    with pytest.raises(PermissionDenied):
        client.users.list()
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)
    assert token not in repr(client) and token not in repr(client.auth)


def test_client_credentials_fetch_and_renew_their_token(live_server, sdk):
    owner = sdk()
    app = register_app(owner, grant_types=["client_credentials"])
    auth = ClientCredentials(app.client_id, app.client_secret, scopes=["projects:read"])
    token_requests = []
    with MarsClient(live_server, auth=auth) as client:
        client.session.hooks["response"].append(
            lambda r, **_: token_requests.append(r.status_code) if "/oauth/" in r.url else None
        )
        assert list(client.projects.list()) == []
        assert list(client.projects.list()) == []
        assert token_requests == [200]  # one token, used twice
        with pytest.raises(PermissionDenied):  # an app acting for itself has no /me
            client.me.get()
        with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)):
            assert list(client.projects.list()) == []  # expired: fetched anew
        assert token_requests == [200, 200]
        requests.post(  # revoked behind its back: the 401 makes it fetch another
            f"{live_server}/oauth/revoke",
            data={"token": auth._tokens.access_token},
            auth=(app.client_id, app.client_secret),
            timeout=10,
        )
        assert list(client.projects.list()) == []
        assert token_requests == [200, 200, 200]
    assert app.client_secret not in repr(auth)


def test_client_credentials_with_a_wrong_secret(sdk):
    app = register_app(sdk(), grant_types=["client_credentials"])
    client = sdk(auth=ClientCredentials(app.client_id, "wrong"))
    with pytest.raises(OAuthError) as raised:
        client.meta.get()
    assert raised.value.error == "invalid_client" and raised.value.status == 401


def test_authorization_code_with_pkce_and_rotating_refresh_tokens(live_server, sdk):
    user_client = sdk()
    app = register_app(user_client)
    flow = AuthorizationCodeFlow(
        live_server,
        client_id=app.client_id,
        client_secret=app.client_secret,
        redirect_uri=REDIRECT,
    )
    request = flow.start(scopes=["account:read"])
    query = parse_qs(urlsplit(request.url).query)
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()]
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [request.state]
    assert 43 <= len(request.code_verifier) <= 128

    callback = approve_in_browser(request.url, user_client.user.email)
    forged = callback.replace(f"state={request.state}", "state=forged")
    with pytest.raises(OAuthError, match="state"):
        flow.finish(request, forged)
    tokens = flow.finish(request, callback)
    assert tokens.refresh_token and tokens.scope == "account:read"
    assert tokens.access_token not in repr(tokens)

    saved = []
    with MarsClient(live_server, auth=flow.auth(tokens, on_refresh=saved.append)) as client:
        assert client.me.get().id == user_client.user.id
        with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)):
            assert client.me.get().id == user_client.user.id  # refreshed on its own
        [rotated] = saved
        assert rotated.refresh_token not in (None, tokens.refresh_token)  # rotation
        assert client.auth.tokens == rotated
        [granted] = user_client.me.authorizations.list()
        assert granted.client_id == app.client_id

        with pytest.raises(OAuthError) as raised:  # the spent refresh token, used again...
            flow.refresh(tokens.refresh_token)
        assert raised.value.error == "invalid_grant"
        with pytest.raises((AuthenticationError, OAuthError)):  # ...revoked the sign-in
            client.me.get()

    user_client.me.authorizations.revoke(client_id=app.client_id)
    assert user_client.me.authorizations.list() == []


def test_openid_gives_the_validated_id_token_claims(live_server, sdk):
    user_client = sdk()
    app = register_app(user_client, scopes=["openid", "email", "account:read"])
    flow = AuthorizationCodeFlow(
        live_server, client_id=app.client_id, client_secret=app.client_secret, redirect_uri=REDIRECT
    )
    request = flow.start(scopes=["openid", "email"])
    assert request.nonce and parse_qs(urlsplit(request.url).query)["nonce"] == [request.nonce]
    tokens = flow.finish(request, approve_in_browser(request.url, user_client.user.email))
    claims = tokens.id_claims
    assert claims["sub"] == user_client.user.id and claims["aud"] == app.client_id
    assert claims["iss"] == live_server and claims["nonce"] == request.nonce
    assert claims["email"] == user_client.user.email and claims["email_verified"] is True
    assert tokens.id_token not in repr(tokens)
    # Another nonce, or a token altered on the way, is refused.
    with pytest.raises(OAuthError, match="nonce"):
        flow.id_token_claims(tokens.id_token, nonce="another")
    header, _, signature = tokens.id_token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub": "usr_else"}').rstrip(b"=").decode()
    with pytest.raises(OAuthError, match="not valid"):
        flow.id_token_claims(f"{header}.{forged}.{signature}", nonce=request.nonce)
    # Without openid, no nonce and no ID token: the flow is plain OAuth.
    plain = flow.start(scopes=["account:read"])
    assert plain.nonce is None
    assert (
        flow.finish(plain, approve_in_browser(plain.url, user_client.user.email)).id_claims is None
    )


def test_a_denied_authorization_is_an_oauth_error(live_server, sdk):
    flow = AuthorizationCodeFlow(live_server, client_id="mars_app_x", redirect_uri=REDIRECT)
    request = flow.start()
    with pytest.raises(OAuthError, match="access_denied"):
        flow.finish(request, f"{REDIRECT}?error=access_denied&state={request.state}")
    with pytest.raises(OAuthError, match="no code"):
        flow.finish(request, f"{REDIRECT}?state={request.state}")
