"""JWT access tokens (RFC 9068) for the organisation's other services: asked for with a
resource indicator (RFC 8707), checked offline with MARS's published keys only."""

from __future__ import annotations

import re

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.test_first_party import CALLBACK
from tests.test_oauth import basic, pkce, sign_in
from tests.test_openid_connect import authorize, query_of

NOTIFY = "https://notify.example.org"
ISSUER = "http://localhost"


@pytest.fixture
def app_config():
    return {"PLUGINS": {"auth": {"resources": [NOTIFY, "https://admin.example.org"]}}}


@pytest.fixture
def service_app(app, create_user, auth_headers, runner):
    """A confidential app set to receive JWT access tokens; its registration (with secret)."""
    owner = create_user(email="ops@example.test")
    created = app.test_client().post(
        "/api/v1/apps",
        json={
            "name": "Scheduler",
            "client_type": "confidential",
            "redirect_uris": [CALLBACK],
            "scopes": ["account:read", "projects:read"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "access_token_format": "jwt",
        },
        headers=auth_headers(owner, ["apps:write", "account:read", "projects:read"]),
    )
    assert created.status_code == 201, created.json
    assert created.json["access_token_format"] == "jwt" and created.json["resources"] == []
    # The services it may ask tokens for are the operator's to say.
    given = runner.invoke(
        args=["apps", "resources", created.json["client_id"], "--resource", NOTIFY]
    )
    assert given.exit_code == 0, given.output
    return created.json


def offline(service, token, audience):
    """What the other service does, with nothing but MARS's published keys."""
    keys = KeySet.import_key_set(service.get("/.well-known/jwks.json").json)
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        client_id={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


def test_a_sibling_service_checks_a_token_offline(app, service_app):
    client = app.test_client()
    answer = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "projects:read", "resource": NOTIFY},
        headers=basic(service_app),
    )
    assert answer.status_code == 200, answer.json
    claims = offline(app.test_client(), answer.json["access_token"], NOTIFY)
    assert claims["client_id"] == claims["sub"] == service_app["client_id"]
    assert claims["scope"] == "projects:read"
    assert claims["exp"] - claims["iat"] == answer.json["expires_in"]
    # Revoked at MARS, it is still valid offline until it expires: keep them short. A token for
    # MARS itself is refused by MARS at once, though (test_without_a_resource...).
    token = answer.json["access_token"]
    revoked = client.post("/oauth/revoke", data={"token": token}, headers=basic(service_app))
    assert revoked.status_code == 200
    assert offline(app.test_client(), token, NOTIFY)


def test_without_a_resource_the_token_is_for_mars_itself(app, service_app):
    client = app.test_client()
    answer = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "projects:read"},
        headers=basic(service_app),
    )
    token = answer.json["access_token"]
    offline(app.test_client(), token, f"{ISSUER}/api")
    # MARS looks every token up: revoked, it is refused at once on MARS's API.
    assert (
        client.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    client.post("/oauth/revoke", data={"token": token}, headers=basic(service_app))
    assert (
        client.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    "resource",
    ["https://evil.example", "https://admin.example.org"],  # unknown; declared, not the app's
)
def test_a_resource_the_app_may_not_ask_for_is_refused(app, service_app, resource):
    answer = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": resource},
        headers=basic(service_app),
    )
    assert answer.status_code == 400 and answer.json["error"] == "invalid_target"


def test_a_token_for_a_service_is_not_one_for_mars(app, service_app):
    answer = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "projects:read", "resource": NOTIFY},
        headers=basic(service_app),
    )
    token = answer.json["access_token"]
    for path in ("/api/v1/projects", "/oauth/userinfo"):
        refused = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, path


def test_only_the_operator_lists_an_apps_services(app, runner, service_app):
    result = runner.invoke(
        args=["apps", "resources", service_app["client_id"], "--resource", "https://x.example"]
    )
    assert result.exit_code != 0 and "not in MARS_AUTH__RESOURCES" in result.output


def approved_code(browser, url):
    """Allow the app on the consent page, which names the services; the code it gets."""
    consent = browser.get(url)
    assert consent.status_code == 200 and f"<code>{NOTIFY}</code>" in consent.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', consent.text).group(1)
    return query_of(browser.post(url, data={"csrf_token": csrf, "action": "approve"}))["code"]


def test_a_users_token_names_the_resource_of_the_authorization(
    app, service_app, create_user, runner
):
    # The app may ask for both services: the authorization, for one, is what limits its tokens.
    both = ["--resource", NOTIFY, "--resource", "https://admin.example.org"]
    assert runner.invoke(args=["apps", "resources", service_app["client_id"], *both]).exit_code == 0
    person = create_user(email="ada@example.test", password="correct horse battery staple")
    browser = app.test_client()
    verifier, challenge = pkce()
    url = authorize(service_app["client_id"], challenge, scope="projects:read", resource=NOTIFY)
    assert sign_in(browser, url, email="ada@example.test").status_code == 303
    code = approved_code(browser, url)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    widened = app.test_client().post(
        "/oauth/token",
        data={**exchange, "resource": "https://admin.example.org"},
        headers=basic(service_app),
    )
    assert widened.status_code == 400 and widened.json["error"] == "invalid_target"
    # The code was used up by that try, as any code is: a new authorization.
    verifier, challenge = pkce()
    url = authorize(service_app["client_id"], challenge, scope="projects:read", resource=NOTIFY)
    code = approved_code(browser, url)  # services are consented to each time
    answer = app.test_client().post(
        "/oauth/token", data={**exchange, "code": code, "code_verifier": verifier},
        headers=basic(service_app),
    )  # fmt: skip
    claims = offline(app.test_client(), answer.json["access_token"], NOTIFY)
    assert claims["sub"] == person.id
    # Refreshed, it is for the same service and can be for no other.
    refresh = {"grant_type": "refresh_token", "refresh_token": answer.json["refresh_token"]}
    wider = app.test_client().post(
        "/oauth/token",
        data={**refresh, "resource": "https://admin.example.org"},
        headers=basic(service_app),
    )
    assert wider.status_code == 400 and wider.json["error"] == "invalid_target"
    renewed = app.test_client().post("/oauth/token", data=refresh, headers=basic(service_app))
    assert renewed.status_code == 200, renewed.json
    assert offline(app.test_client(), renewed.json["access_token"], NOTIFY)["sub"] == person.id
    bad = authorize(
        service_app["client_id"], challenge, scope="projects:read", resource="https://evil.example"
    )
    assert query_of(browser.get(bad))["error"] == "invalid_target"
