"""No credential issues a credential stronger than itself (personal access tokens, OAuth apps
and their secrets, webhook subscriptions): in scopes, and for tokens in lifetime."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mars_server.auth.models import OAuthClient, PersonalAccessToken
from mars_server.testing import make_token
from mars_server.webhooks.models import WebhookEndpoint
from tests.test_oauth import REDIRECT, exchange, get_code

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client(app):
    """Each request here sends the token it names, and no other."""
    return app.test_client()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def count(db, model):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def assert_missing(response, *scopes):
    assert response.status_code == 403, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == "urn:mars:problem:insufficient-scope"
    assert response.json["scope"] == " ".join(sorted(scopes))
    for scope in scopes:
        assert scope in response.json["detail"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


# --- personal access token -> personal access token -----------------------------------------


def test_a_token_cannot_mint_a_token_with_scopes_it_lacks(client, db, create_user, token_for):
    user = create_user()
    weak = token_for(user, ["account:write"])
    before = count(db, PersonalAccessToken)
    for asked in (["projects:write"], ["account:write", "webhooks:write", "apps:write"]):
        response = client.post(
            "/api/v1/me/tokens", json={"name": "escalate", "scopes": asked}, headers=bearer(weak)
        )
        assert_missing(response, *(set(asked) - {"account:write"}))
    assert count(db, PersonalAccessToken) == before


def test_a_token_may_mint_a_token_with_fewer_scopes(client, create_user, token_for):
    user = create_user()
    token = token_for(user, ["account:write", "projects:read", "projects:write"])
    created = client.post(
        "/api/v1/me/tokens",
        json={"name": "reader", "scopes": ["projects:read"]},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.json
    new = created.json["token"]
    assert client.get("/api/v1/projects", headers=bearer(new)).status_code == 200
    refused = client.post(
        "/api/v1/projects", json={"name": "No", "slug": "no"}, headers=bearer(new)
    )
    assert refused.status_code == 403


def test_a_token_cannot_mint_one_that_outlives_it(client, db, create_user, token_for):
    user = create_user()
    short = token_for(user, ["account:read", "account:write"], expires_in_days=2)
    caller_ends = db.session.scalar(sa.select(PersonalAccessToken.expires_at))
    for asked in ({"expires_in_days": 3}, {"expires_in_days": 30}, {}):
        made = client.post(
            "/api/v1/me/tokens",
            json={"name": "longer", "scopes": ["account:read"]} | asked,
            headers=bearer(short),
        )
        assert made.status_code == 201, made.json
        ends = dt.datetime.fromisoformat(made.json["expires_at"])
        assert caller_ends - dt.timedelta(seconds=5) < ends <= caller_ends
    shorter = client.post(
        "/api/v1/me/tokens",
        json={"name": "shorter", "scopes": ["account:read"], "expires_in_days": 1},
        headers=bearer(short),
    )
    ends = dt.datetime.fromisoformat(shorter.json["expires_at"])
    assert ends < caller_ends - dt.timedelta(hours=23)


# --- OAuth access token -> personal access token --------------------------------------------


@pytest.fixture
def owner(create_user):
    return create_user(email="dev@example.test", password=PASSWORD)


@pytest.fixture
def register(app, owner, token_for):
    """An OAuth app of ``owner`` allowed ``scopes``, registered with a token that has them."""

    def make(scopes):
        token = token_for(owner, ["apps:write", *scopes])
        response = app.test_client().post(
            "/api/v1/apps",
            json={
                "name": "Rover",
                "client_type": "confidential",
                "redirect_uris": [REDIRECT],
                "scopes": scopes,
                "grant_types": ["authorization_code", "refresh_token"],
            },
            headers=bearer(token),
        )
        assert response.status_code == 201, response.json
        return response.json

    return make


def oauth_token(app, oauth_app, scope):
    code, verifier = get_code(app, oauth_app, scope=scope)
    response = exchange(app.test_client(), oauth_app, code, verifier)
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def test_an_oauth_token_cannot_create_personal_tokens_without_account_tokens(app, db, register):
    oauth_app = register(["account:read", "account:write"])
    token = oauth_token(app, oauth_app, "account:read account:write")
    before = count(db, PersonalAccessToken)
    for asked in (["account:read"], ["projects:write", "webhooks:write", "apps:write"]):
        response = app.test_client().post(
            "/api/v1/me/tokens", json={"name": "via app", "scopes": asked}, headers=bearer(token)
        )
        assert_missing(response, "account:tokens")
    assert count(db, PersonalAccessToken) == before


def test_an_oauth_token_with_account_tokens_mints_no_more_than_it_has(app, db, register):
    scopes = ["account:read", "account:tokens", "account:write"]
    oauth_app = register(scopes)
    token = oauth_token(app, oauth_app, " ".join(scopes))
    client = app.test_client()
    before = count(db, PersonalAccessToken)
    escalate = client.post(
        "/api/v1/me/tokens",
        json={"name": "via app", "scopes": ["account:read", "projects:write"]},
        headers=bearer(token),
    )
    assert_missing(escalate, "projects:write")
    assert count(db, PersonalAccessToken) == before
    allowed = client.post(
        "/api/v1/me/tokens",
        json={"name": "via app", "scopes": ["account:read"]},
        headers=bearer(token),
    )
    assert allowed.status_code == 201, allowed.json
    assert client.get("/api/v1/me", headers=bearer(allowed.json["token"])).status_code == 200


# --- OAuth apps and their secrets -----------------------------------------------------------

APP = {
    "name": "Service",
    "client_type": "confidential",
    "redirect_uris": [REDIRECT],
    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
}


def test_an_app_is_allowed_no_scope_its_creator_lacks(client, db, create_user, token_for):
    user = create_user()
    weak = token_for(user, ["apps:write"])
    refused = client.post(
        "/api/v1/apps", json=APP | {"scopes": ["projects:write"]}, headers=bearer(weak)
    )
    assert_missing(refused, "projects:write")
    assert count(db, OAuthClient) == 0
    strong = token_for(user, ["apps:write", "projects:write"])
    created = client.post(
        "/api/v1/apps", json=APP | {"scopes": ["projects:write"]}, headers=bearer(strong)
    )
    assert created.status_code == 201, created.json
    app_id, etag = created.json["id"], created.headers["ETag"]

    widen = client.patch(
        f"/api/v1/apps/{app_id}",
        json={"scopes": ["projects:write", "webhooks:write"]},
        headers=bearer(strong) | {"If-Match": etag},
    )
    assert_missing(widen, "webhooks:write")
    # Narrowing is no issuance: a token that has apps:write alone may take scopes away.
    narrow = client.patch(
        f"/api/v1/apps/{app_id}",
        json={"scopes": ["projects:write"], "name": "Renamed"},
        headers=bearer(weak) | {"If-Match": etag},
    )
    assert narrow.status_code == 200, narrow.json

    digest = db.session.scalar(sa.select(OAuthClient.secret_digest))
    rotate = client.post(f"/api/v1/apps/{app_id}/secret", headers=bearer(weak))
    assert_missing(rotate, "projects:write")
    db.session.expire_all()
    assert db.session.scalar(sa.select(OAuthClient.secret_digest)) == digest
    rotated = client.post(f"/api/v1/apps/{app_id}/secret", headers=bearer(strong))
    assert rotated.status_code == 200, rotated.json


# --- webhook subscriptions ------------------------------------------------------------------


def test_a_webhook_receives_no_event_its_creator_may_not_read(client, db, create_user, token_for):
    user = create_user()
    weak = token_for(user, ["webhooks:write"])
    body = {"url": "https://hooks.example.com/in", "events": ["project.created"]}
    refused = client.post("/api/v1/webhooks", json=body, headers=bearer(weak))
    assert_missing(refused, "projects:read")
    assert count(db, WebhookEndpoint) == 0

    strong = token_for(user, ["webhooks:write", "projects:read"])
    created = client.post("/api/v1/webhooks", json=body, headers=bearer(strong))
    assert created.status_code == 201, created.json
    hook_id, etag = created.json["id"], created.headers["ETag"]

    moved = client.patch(
        f"/api/v1/webhooks/{hook_id}",
        json={"url": "https://elsewhere.example.com/in"},
        headers=bearer(weak) | {"If-Match": etag},
    )
    assert_missing(moved, "projects:read")
    more = client.patch(
        f"/api/v1/webhooks/{hook_id}",
        json={"events": ["project.created", "project.deleted"]},
        headers=bearer(weak) | {"If-Match": etag},
    )
    assert_missing(more, "projects:read")
    rotate = client.post(f"/api/v1/webhooks/{hook_id}/rotate-secret", headers=bearer(weak))
    assert_missing(rotate, "projects:read")
    described = client.patch(
        f"/api/v1/webhooks/{hook_id}",
        json={"description": "only a label"},
        headers=bearer(weak) | {"If-Match": etag},
    )
    assert described.status_code == 200, described.json
    db.session.expire_all()
    assert db.session.scalar(sa.select(WebhookEndpoint.url)) == body["url"]


def test_a_delivery_shows_its_event_only_to_a_token_that_may_read_it(
    app, client, db, create_user, token_for, run_jobs
):
    user = create_user()
    owner = bearer(token_for(user))
    hook = client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/in", "events": ["project.created"]},
        headers=owner,
    ).json
    made = client.post(
        "/api/v1/projects",
        json={"slug": "secret-plan", "name": "Secret plan", "visibility": "private"},
        headers=owner,
    )
    assert made.status_code == 201, made.json
    run_jobs()  # the fan-out writes the delivery (its attempt fails: no such host)
    [delivery] = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=owner).json[
        "items"
    ]
    path = f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}"
    reader = bearer(token_for(user, ["webhooks:read"]))
    refused = client.get(path, headers=reader)
    assert_missing(refused, "projects:read")
    assert "Secret plan" not in refused.get_data(as_text=True)
    shown = client.get(path, headers=bearer(token_for(user, ["webhooks:read", "projects:read"])))
    assert shown.status_code == 200, shown.json
    assert shown.json["body"]["data"]["name"] == "Secret plan"


def test_tokens_an_app_made_go_when_its_authorization_is_taken_back(app, db, register, owner):
    scopes = ["account:read", "account:tokens", "account:write"]
    oauth_app = register(scopes)
    client = app.test_client()

    def minted():
        token = oauth_token(app, oauth_app, " ".join(scopes))
        made = client.post(
            "/api/v1/me/tokens",
            json={"name": "via app", "scopes": ["account:read"]},
            headers=bearer(token),
        )
        assert made.status_code == 201, made.json
        assert made.json["issued_by_client_id"] == oauth_app["client_id"]
        assert client.get("/api/v1/me", headers=bearer(made.json["token"])).status_code == 200
        return made.json["token"]

    mine = client.post(
        "/api/v1/me/tokens",
        json={"name": "mine", "scopes": ["account:read"]},
        headers=bearer(make_token(app, owner, ["account:read", "account:write"])),
    ).json
    assert mine["issued_by_client_id"] is None
    first = minted()
    taken_back = client.delete(
        f"/api/v1/me/authorizations/{oauth_app['client_id']}",
        headers=bearer(make_token(app, owner, ["account:write"])),
    )
    assert taken_back.status_code == 204, taken_back.json
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(mine["token"])).status_code == 200

    second = minted()
    deleted = client.delete(
        f"/api/v1/apps/{oauth_app['id']}",
        headers=bearer(make_token(app, owner, ["apps:write", "apps:read"]))
        | {
            "If-Match": client.get(
                f"/api/v1/apps/{oauth_app['id']}",
                headers=bearer(make_token(app, owner, ["apps:read"])),
            ).headers["ETag"]
        },
    )
    assert deleted.status_code == 204, deleted.json
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(mine["token"])).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uris": ["https://attacker.example/cb"]},
        {"grant_types": ["authorization_code", "refresh_token", "client_credentials"]},
    ],
)
def test_where_an_apps_codes_go_is_changed_only_by_a_token_with_its_scopes(
    client, db, create_user, token_for, change
):
    user = create_user()
    strong = bearer(token_for(user, ["apps:write", "apps:read", "account:read", "account:write"]))
    created = client.post(
        "/api/v1/apps",
        json=APP | {"scopes": ["account:read", "account:write"]},
        headers=strong,
    )
    assert created.status_code == 201, created.json
    path, etag = f"/api/v1/apps/{created.json['id']}", created.headers["ETag"]
    weak = bearer(token_for(user, ["apps:write", "apps:read"]))
    refused = client.patch(path, json=change, headers=weak | {"If-Match": etag})
    assert_missing(refused, "account:read", "account:write")
    assert client.get(path, headers=weak).json["redirect_uris"] == APP["redirect_uris"]
    allowed = client.patch(path, json=change, headers=strong | {"If-Match": etag})
    assert allowed.status_code == 200, allowed.json


def test_plugins_check_what_they_issue_with_authorize_issuance(app, create_user, token_for):
    """The helper a plugin calls from a view that hands out a credential of its own."""
    from mars_server.http import Forbidden, InsufficientScope, authorize_issuance

    user = create_user()
    token = token_for(user, ["projects:read"], expires_in_days=2)
    headers = {"Authorization": f"Bearer {token}"}
    with app.test_request_context(headers=headers):
        assert authorize_issuance(["projects:read"]).id == user.id
    with app.test_request_context(headers=headers), pytest.raises(InsufficientScope) as lacking:
        authorize_issuance(["projects:read", "projects:write"])
    assert lacking.value.extra["scope"] == "projects:write"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    with app.test_request_context(headers=headers), pytest.raises(Forbidden):
        authorize_issuance(["projects:read"], expires_at=later)
