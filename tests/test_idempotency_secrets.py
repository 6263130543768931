"""The idempotency store keeps nothing readable: a response that carries a fresh secret (a
personal access token, an app's or a webhook's secret) is replayed to its caller, but a copy
of the database shows neither the secret nor anything to test a guessed password against."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import sqlalchemy as sa

from mars_server.models import IdempotencyKey

REDIRECT = "https://app.example/callback"
EVERY_SCOPE_NEEDED = [
    "account:read",
    "account:write",
    "apps:write",
    "projects:read",
    "webhooks:write",
]


def database_dump(db) -> str:
    """Every row of every table, as a backup would hold it."""
    rows = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    rows.append(str(value))
    return "\n".join(rows)


def assert_nowhere(db, secret: str) -> None:
    dump = database_dump(db)
    # Its random part alone, too: the token's own base64 may hold underscores after its prefix.
    random_part = re.sub(r"^(mars_pat_|mars_cs_|whsec_)", "", secret)
    assert len(random_part) >= 20
    for form in (secret, json.dumps(secret)[1:-1], random_part):
        assert form not in dump


APP = {
    "name": "Rover",
    "client_type": "confidential",
    "redirect_uris": [REDIRECT],
    "scopes": ["account:read"],
    "grant_types": ["authorization_code"],
}
HOOK = {"url": "https://hooks.example.com/in", "events": ["project.created"]}


def _created(client, headers, path, body):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


#: operation -> (what to POST, given a client and a caller's headers; the secret's field)
ISSUERS = {
    "create_my_token": (
        lambda client, headers: ("/api/v1/me/tokens", {"name": "ci", "scopes": ["account:read"]}),
        "token",
    ),
    "create_app": (lambda client, headers: ("/api/v1/apps", APP), "client_secret"),
    "rotate_app_secret": (
        lambda client, headers: (
            f"/api/v1/apps/{_created(client, headers, '/api/v1/apps', APP)}/secret",
            None,
        ),
        "client_secret",
    ),
    "create_webhook": (lambda client, headers: ("/api/v1/webhooks", HOOK), "secret"),
    "rotate_webhook_secret": (
        lambda client, headers: (
            f"/api/v1/webhooks/{_created(client, headers, '/api/v1/webhooks', HOOK)}/rotate-secret",
            None,
        ),
        "secret",
    ),
}


@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "idempotency-key"])
@pytest.mark.parametrize("operation", sorted(ISSUERS))
def test_no_issued_secret_is_stored_readable(
    app, db, create_user, auth_headers, operation, with_key
):
    headers = auth_headers(create_user(), EVERY_SCOPE_NEEDED)
    client = app.test_client()
    prepare, field = ISSUERS[operation]
    path, body = prepare(client, headers)
    if with_key:
        headers["Idempotency-Key"] = f"key-{operation}"
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.json
    secret = response.json[field]
    assert len(secret) >= 20
    assert_nowhere(db, secret)
    if with_key:
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 1
        replay = client.post(path, json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.status_code == response.status_code
        # The key's whole point: the same caller gets the secret again.
        assert replay.json[field] == secret
        assert_nowhere(db, secret)


def test_the_fingerprint_of_a_body_with_a_password_is_keyed(app, db, create_user, auth_headers):
    password = "a new passphrase nobody guesses"
    headers = auth_headers(create_user(password="the first passphrase"), ["account:write"])
    body = {"current_password": "the first passphrase", "new_password": password}
    response = app.test_client().post(
        "/api/v1/me/password", json=body, headers=headers | {"Idempotency-Key": "pw-1"}
    )
    assert response.status_code == 204, response.json
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    unkeyed = hashlib.sha256(b"POST\0/api/v1/me/password\0\0" + canonical).hexdigest()
    stored = db.session.scalar(sa.select(IdempotencyKey.fingerprint))
    assert stored and stored != unkeyed
    dump = database_dump(db)
    assert password not in dump
    assert unkeyed not in dump
    assert hashlib.sha256(canonical).hexdigest() not in dump


def test_a_new_secret_key_never_does_the_work_twice(app, db, create_user, token_for):
    """After MARS_SECRET_KEY is replaced the stored response cannot be opened: a retry is
    refused, never run again."""
    token = token_for(create_user(), ["account:read", "account:write"])
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "rekeyed"}
    body = {"name": "ci", "scopes": ["account:read"]}
    first = app.test_client().post("/api/v1/me/tokens", json=body, headers=headers)
    assert first.status_code == 201
    tokens = db.session.scalar(sa.text("SELECT count(*) FROM auth_personal_access_tokens"))
    original = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "another secret key, at least 32 characters long"
    try:
        retry = app.test_client().post("/api/v1/me/tokens", json=body, headers=headers)
    finally:
        app.config["SECRET_KEY"] = original
    assert retry.status_code == 409, retry.json
    assert retry.json["type"] == "urn:mars:problem:idempotency-replay-unavailable"
    assert retry.mimetype == "application/problem+json"
    assert "token" not in retry.json
    assert db.session.scalar(sa.text("SELECT count(*) FROM auth_personal_access_tokens")) == tokens


def test_a_throttled_answer_is_not_replayed(make_app, db):
    """A 429 did nothing: the key is free for the retry its Retry-After invites."""
    app = make_app(PLUGINS={"auth": {"account_mail_requests_per_address": 1}})
    client = app.test_client()
    assert (
        client.post("/api/v1/accounts/password-reset", json={"email": "a@example.test"}).status_code
        == 202
    )
    body, key = {"email": "b@example.test"}, {"Idempotency-Key": "reset-1"}
    throttled = client.post("/api/v1/accounts/password-reset", json=body, headers=key)
    assert throttled.status_code == 429
    assert "Idempotent-Replayed" not in throttled.headers
    again = client.post("/api/v1/accounts/password-reset", json=body, headers=key)
    assert again.status_code == 429
    assert "Idempotent-Replayed" not in again.headers
    assert again.headers["Retry-After"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0


def test_callers_without_credentials_never_share_a_replay(app, db):
    def reset_from(address):
        return app.test_client().post(
            "/api/v1/accounts/password-reset",
            json={"email": "someone@example.test"},
            headers={"Idempotency-Key": "common-key"},
            environ_base={"REMOTE_ADDR": address},
        )

    assert reset_from("192.0.2.1").status_code == 202
    assert reset_from("192.0.2.1").headers.get("Idempotent-Replayed") == "true"
    other = reset_from("198.51.100.2")
    assert other.status_code == 202
    assert "Idempotent-Replayed" not in other.headers
