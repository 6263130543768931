"""MARS as an OpenID Connect provider: discovery, ID tokens checked as a client library checks
them (joserfc, with the published keys only), UserInfo, prompt and max_age, key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import time_machine
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from mars_server.auth import signing_keys
from mars_server.db import utcnow
from tests.test_first_party import CALLBACK
from tests.test_oauth import PASSWORD, pkce, sign_in

ISSUER = "http://localhost"

#: OpenID Connect Discovery 1.0, section 3: what a provider's metadata MUST hold.
REQUIRED_METADATA = {
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
}


@pytest.fixture
def website(app, runner):
    """A first-party app that may ask for OpenID Connect's scopes; its client_id."""
    scopes = ["openid", "email", "profile", "account:read"]
    result = runner.invoke(
        args=["apps", "create", "--first-party", "--name", "Website", "--redirect-uri", CALLBACK]
        + [arg for scope in scopes for arg in ("--scope", scope)]
    )
    assert result.exit_code == 0, result.output
    return result.output.split()[-1]


@pytest.fixture
def person(create_user):
    return create_user(email="ada@example.test", password=PASSWORD)


def authorize(client_id, challenge, **extra):
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | extra
    return "/oauth/authorize?" + urlencode(params)


def query_of(response):
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def tokens(browser, client_id, scope="openid", nonce="n-0S6_WzA2Mj", signed_in=False, **extra):
    verifier, challenge = pkce()
    extra = extra | ({"nonce": nonce} if nonce else {})
    url = authorize(client_id, challenge, scope=scope, **extra)
    if not signed_in:
        assert sign_in(browser, url, email="ada@example.test").status_code == 303
    code = query_of(browser.get(url))["code"]
    answer = browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )
    assert answer.status_code == 200, answer.json
    return answer.json


def published_keys(client) -> KeySet:
    discovery = client.get("/.well-known/openid-configuration").json
    path = urlsplit(discovery["jwks_uri"]).path
    return KeySet.import_key_set(client.get(path).json)


def validated(client, id_token, client_id, nonce="n-0S6_WzA2Mj"):
    """The ID token's claims, checked as OpenID Connect Core 3.1.3.7 says a client must."""
    token = jwt.decode(id_token, published_keys(client), algorithms=["ES256"])
    assert token.header["alg"] == "ES256" and token.header["kid"]
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
        auth_time={"essential": True},
    )
    registry.validate(token.claims)
    return token.claims


def test_the_discovery_document_has_every_required_field(app):
    client = app.test_client()
    discovery = client.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200
    body = discovery.json
    assert set(body) >= REQUIRED_METADATA
    assert body["issuer"] == ISSUER
    assert body["response_types_supported"] == ["code"]
    assert body["subject_types_supported"] == ["public"]
    assert body["id_token_signing_alg_values_supported"] == ["ES256"]
    assert {"openid", "profile", "email"} <= set(body["scopes_supported"])
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "end_session_endpoint"):  # fmt: skip
        assert body[name].startswith(ISSUER + "/")
        assert client.get(urlsplit(body[name]).path).status_code != 404, name
    keys = client.get("/.well-known/jwks.json").json["keys"]
    assert keys and all(set(k) == {"kty", "crv", "x", "y", "kid", "alg", "use"} for k in keys)


def test_openid_gives_an_id_token_a_client_library_validates(app, website, person):
    browser = app.test_client()
    answer = tokens(browser, website)
    claims = validated(app.test_client(), answer["id_token"], website)
    assert claims["sub"] == person.id  # the account's id, never the e-mail address
    assert abs(claims["auth_time"] - utcnow().timestamp()) < 60
    assert claims["exp"] - claims["iat"] == 3600
    assert "email" not in claims and "name" not in claims  # only with their scopes
    # at_hash binds the access token to the ID token (OpenID Connect Core 3.1.3.6).
    digest = hashlib.sha256(answer["access_token"].encode()).digest()
    at_hash = base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert claims["at_hash"] == at_hash


def test_email_and_profile_claims_come_only_with_their_scopes(app, website, person):
    answer = tokens(app.test_client(), website, scope="openid email profile")
    claims = validated(app.test_client(), answer["id_token"], website)
    assert claims["email"] == "ada@example.test" and claims["email_verified"] is True
    assert claims["name"] == "Test User"
    info = app.test_client().get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {answer['access_token']}"}
    )
    assert info.status_code == 200
    assert info.json == {
        "sub": person.id,
        "email": "ada@example.test",
        "email_verified": True,
        "name": "Test User",
        "updated_at": info.json["updated_at"],
    }


def test_without_openid_there_is_no_id_token_and_no_userinfo(app, website, person):
    answer = tokens(app.test_client(), website, scope="account:read", nonce=None)
    assert "id_token" not in answer
    info = app.test_client().get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {answer['access_token']}"}
    )
    assert (
        info.status_code == 403 and 'error="insufficient_scope"' in info.headers["WWW-Authenticate"]
    )
    anonymous = app.test_client().get("/oauth/userinfo", headers={"Authorization": "Bearer x"})
    assert anonymous.status_code == 401 and anonymous.json["error"] == "invalid_token"


def test_a_tampered_or_foreign_id_token_fails_validation(app, website, person):
    answer = tokens(app.test_client(), website)
    header, _, signature = answer["id_token"].split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"usr_someone_else"}').rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged}.{signature}", published_keys(app.test_client()))
    with pytest.raises(Exception, match="aud"):
        validated(app.test_client(), answer["id_token"], "another-app")


def test_a_nonce_is_used_once(app, website, person):
    browser = app.test_client()
    tokens(browser, website, nonce="once")
    _, challenge = pkce()
    again = browser.get(authorize(website, challenge, nonce="once"))
    assert query_of(again)["error"] == "invalid_request"


def test_prompt_none_never_shows_a_page(app, website, person):
    browser = app.test_client()
    _, challenge = pkce()
    silent = query_of(browser.get(authorize(website, challenge, prompt="none", nonce="a")))
    assert silent["error"] == "login_required"
    tokens(browser, website, nonce="b")  # signs in
    _, challenge = pkce()
    silent = query_of(browser.get(authorize(website, challenge, prompt="none", nonce="c")))
    assert "code" in silent and silent["state"] == "st4te"


def test_prompt_login_and_max_age_ask_for_the_password_again(app, website, person):
    browser = app.test_client()
    first = tokens(browser, website, nonce="1")
    auth_time = validated(app.test_client(), first["id_token"], website, nonce="1")["auth_time"]
    _, challenge = pkce()
    url = authorize(website, challenge, prompt="login", nonce="2")
    assert 'value="sign_in"' in browser.get(url).text
    with time_machine.travel(utcnow() + dt.timedelta(minutes=10)):
        again = tokens(browser, website, nonce="3", prompt="login")
        later = validated(app.test_client(), again["id_token"], website, nonce="3")["auth_time"]
        assert later >= auth_time + 590
        # max_age: a sign-in older than that needs a new one; a recent one does not.
        _, challenge = pkce()
        assert query_of(browser.get(authorize(website, challenge, max_age="3600", nonce="4")))
    with time_machine.travel(utcnow() + dt.timedelta(hours=2)):
        _, challenge = pkce()
        stale = browser.get(authorize(website, challenge, max_age="3600", nonce="5"))
        assert stale.status_code == 200 and 'value="sign_in"' in stale.text


def test_a_rotated_key_stays_published_until_its_tokens_have_expired(app, website, person, runner):
    browser = app.test_client()
    before = tokens(browser, website, nonce="r1")["id_token"]
    old_kid = jwt.decode(before, published_keys(app.test_client())).header["kid"]
    rotated = runner.invoke(args=["keys", "rotate-signing"])
    assert rotated.exit_code == 0, rotated.output
    after = tokens(browser, website, nonce="r2", signed_in=True)["id_token"]
    new_kid = jwt.decode(after, published_keys(app.test_client())).header["kid"]
    assert new_kid != old_kid
    assert {old_kid, new_kid} == {k["kid"] for k in app.test_client().get(
        "/.well-known/jwks.json").json["keys"]}  # fmt: skip
    validated(app.test_client(), before, website, nonce="r1")  # still checks
    with time_machine.travel(utcnow() + dt.timedelta(minutes=62)):
        kids = {k["kid"] for k in app.test_client().get("/.well-known/jwks.json").json["keys"]}
        assert kids == {new_kid}
        assert runner.invoke(args=["keys", "rotate-signing"]).exit_code == 0
    assert signing_keys.current().id not in (old_kid, new_kid)


def test_the_private_keys_are_sealed(app, website, person, db):
    tokens(app.test_client(), website)
    [row] = db.session.scalars(db.select(signing_keys.SigningKey))
    assert '"d"' not in row.private_sealed and "d" not in row.public_jwk
    assert PASSWORD


def test_an_id_token_hint_signs_out_without_asking(app, runner, person, create_user):
    # An app that is not first-party: without a hint, the person would be asked.
    created = runner.invoke(
        args=["apps", "create", "--first-party", "--name", "Other", "--redirect-uri", CALLBACK,
              "--post-logout-redirect-uri", "https://www.example.org/", "--scope", "openid"]
    )  # fmt: skip
    client_id = created.output.split()[-1]
    from mars_server.auth.models import OAuthClient
    from mars_server.db import db

    db.session.execute(
        db.update(OAuthClient).where(OAuthClient.client_id == client_id).values(first_party=False)
    )
    db.session.commit()
    browser = app.test_client()
    verifier, challenge = pkce()
    url = authorize(client_id, challenge, nonce="h1")
    assert sign_in(browser, url, email="ada@example.test").status_code == 303
    consent = browser.get(url)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', consent.text).group(1)
    code = query_of(browser.post(url, data={"csrf_token": csrf, "action": "approve"}))["code"]
    id_token = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": verifier, "client_id": client_id},
    ).json["id_token"]  # fmt: skip
    back = "https://www.example.org/"
    # A hint for another app, or a forged one, is refused and changes nothing.
    for bad in (id_token[:-4] + "AAAA", id_token):
        params = {"id_token_hint": bad, "post_logout_redirect_uri": back}
        if bad == id_token:
            params["client_id"] = "someone-else"
        refused = browser.get("/oauth/logout?" + urlencode(params))
        assert refused.status_code == 400 and "Location" not in refused.headers
    out = browser.get(
        "/oauth/logout?" + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": back})
    )
    assert out.status_code == 303 and out.headers["Location"] == back
    assert 'value="sign_in"' in browser.get(authorize(client_id, challenge, nonce="h2")).text


def test_the_review_s_edge_cases_are_clear_answers(app, website, person):
    browser = app.test_client()
    answer = tokens(browser, website, scope="openid email", nonce="e1")
    # A refresh token is no access token at UserInfo.
    refresh = {"Authorization": f"Bearer {answer['refresh_token']}"}
    assert app.test_client().get("/oauth/userinfo", headers=refresh).status_code == 401
    # max_age that only looks like a number, and an over-long nonce: answers, not errors.
    _, challenge = pkce()
    odd = browser.get(authorize(website, challenge, max_age="²", nonce="e2"))
    assert odd.status_code == 302 and "code=" in odd.headers["Location"]
    long_nonce = browser.get(authorize(website, challenge, nonce="n" * 256))
    assert query_of(long_nonce)["error"] == "invalid_request"
    # Without a scope, an app gets what it may have, but never openid unasked.
    _, challenge = pkce()
    params = authorize(website, challenge).replace("&scope=openid", "")
    assert "scope=" not in params
    code = query_of(browser.get(params))["code"]
    assert code
    # prompt=none with nobody signed in: back to the app, never a page.
    _, challenge = pkce()
    url = authorize(website, challenge, scope="account:read", prompt="none")
    assert query_of(app.test_client().get(url))["error"] == "login_required"


def test_prompt_login_counts_a_sign_in_once_however_the_query_is_written(app, website, person):
    browser = app.test_client()
    _, challenge = pkce()
    query = authorize(website, challenge, scope="account:read", prompt="login").partition("?")[2]
    raw = query.replace("state=st4te", "state=a|b")  # as a browser may leave it unencoded
    url = "/oauth/authorize?" + raw
    assert sign_in(browser, url, email="ada@example.test").status_code == 303
    assert browser.get(url).status_code == 302  # signed in for this request: a code
    again = browser.get(url)  # the same request again: a new sign-in is asked for
    assert again.status_code == 200 and 'value="sign_in"' in again.text


def test_only_an_id_token_serves_as_a_sign_out_hint(app, runner, website, person):
    result = runner.invoke(args=["apps", "create", "--first-party", "--name", "Svc",
                                 "--redirect-uri", CALLBACK, "--scope", "account:read",
                                 "--access-token-format", "jwt"])  # fmt: skip
    client_id = result.output.split()[-1]
    access = tokens(app.test_client(), client_id, scope="account:read", nonce=None)
    refused = app.test_client().get(
        "/oauth/logout?" + urlencode({"id_token_hint": access["access_token"]})
    )
    assert refused.status_code == 400
