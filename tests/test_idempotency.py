"""POST with Idempotency-Key: replay, mismatch, concurrency, expiry."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
import time_machine

import mars_projects.services
from mars_server.models import IdempotencyKey
from mars_server.testing import make_user, signed_in_client


def project_count(db) -> int:
    return db.session.scalar(sa.text("SELECT count(*) FROM projects"))


def test_same_key_and_body_replays_the_first_response(client, db, project_body):
    body = project_body()
    first = client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-1"})
    second = client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert second.json == first.json
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert project_count(db) == 1


def test_replays_an_error_too(client, db, project_body):
    client.post("/api/v1/projects", json=project_body(slug="taken"))
    body = project_body(slug="taken")
    first = client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-2"})
    second = client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-2"})
    assert first.status_code == second.status_code == 409
    assert second.json["detail"] == first.json["detail"]


def test_same_key_with_another_body_is_422(client, db, project_body):
    client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-3"})
    response = client.post(
        "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-3"}
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("idempotency-key-reused")
    assert project_count(db) == 1


def test_concurrent_duplicate_is_409(app, db, project_body, monkeypatch):
    inside, release = threading.Event(), threading.Event()
    real_create = mars_projects.services.create_project_for

    def slow_create(actor, data):
        inside.set()
        release.wait(10)
        return real_create(actor, data)

    monkeypatch.setattr(mars_projects.services, "create_project_for", slow_create)
    # Both requests send the same token.
    first_client = signed_in_client(app, make_user(app))
    second_client = app.test_client()
    second_client.environ_base.update(first_client.environ_base)
    body, results = project_body(), {}

    def first_request():
        results["first"] = first_client.post(
            "/api/v1/projects", json=body, headers={"Idempotency-Key": "k-4"}
        )

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        assert inside.wait(10)
        duplicate = second_client.post(
            "/api/v1/projects", json=body, headers={"Idempotency-Key": "k-4"}
        )
        assert thread.is_alive()  # answered while the first one was still running
    finally:
        release.set()
        thread.join(10)
    assert duplicate.status_code == 409
    assert duplicate.mimetype == "application/problem+json"
    assert duplicate.json["type"] == "urn:mars:problem:idempotency-key-in-use"
    assert duplicate.headers["Retry-After"] == "1"
    assert results["first"].status_code == 201
    assert project_count(db) == 1


def test_keys_expire_after_24_hours(client, db, project_body):
    with time_machine.travel(dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), tick=False) as clock:
        client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-5"})
        clock.shift(dt.timedelta(hours=23, minutes=59))
        assert (
            client.post(
                "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-5"}
            ).status_code
            == 422
        )
        clock.shift(dt.timedelta(minutes=2))
        response = client.post(
            "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-5"}
        )
    assert response.status_code == 201
    assert project_count(db) == 2


def test_server_error_frees_the_key(client, db, project_body, monkeypatch):
    def broken(actor, data):
        raise RuntimeError("boom")

    monkeypatch.setattr(mars_projects.services, "create_project_for", broken)
    body = project_body()
    assert (
        client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-6"}).status_code
        == 500
    )
    monkeypatch.undo()
    response = client.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-6"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_keys_belong_to_their_caller(app, client, db, project_body):
    client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-7"})
    other = signed_in_client(app).post(
        "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-7"}
    )
    assert other.status_code == 201
    assert project_count(db) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_malformed_key_is_400(client, db, project_body, key):
    response = client.post(
        "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": key}
    )
    assert response.status_code == 400
    assert project_count(db) == 0


def test_no_credentials_are_stored(client, db, project_body):
    client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-8"})
    row = db.session.scalars(sa.select(IdempotencyKey)).one()
    token = client.environ_base["HTTP_AUTHORIZATION"].split()[1]
    assert token not in row.owner
    assert len(row.owner) == 64


def test_purge_removes_only_expired_keys(client, db, runner, project_body):
    with time_machine.travel(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), tick=False):
        client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "old"})
    client.post("/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "new"})
    result = runner.invoke(args=["db", "purge-expired"])
    assert "deleted 1 expired" in result.output
    assert db.session.scalars(sa.select(IdempotencyKey.key)).all() == ["new"]


def test_the_same_json_with_other_spacing_is_the_same_request(client, db):
    compact = '{"slug":"same-doc","name":"Same"}'
    spaced = '{ "name" : "Same",\n  "slug" : "same-doc" }'
    first = client.post(
        "/api/v1/projects",
        data=compact,
        content_type="application/json",
        headers={"Idempotency-Key": "k-9"},
    )
    second = client.post(
        "/api/v1/projects",
        data=spaced,
        content_type="application/json",
        headers={"Idempotency-Key": "k-9"},
    )
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert project_count(db) == 1


def test_keys_belong_to_the_caller_not_the_token(app, db, project_body):
    """A client that renews its token between two tries of one request gets the replay;
    another user's same key is another key."""
    user = make_user(app)
    first, renewed = signed_in_client(app, user), signed_in_client(app, user)
    body = project_body()
    created = first.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-9"})
    assert created.status_code == 201
    again = renewed.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-9"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == created.json["id"]
    other = signed_in_client(app).post(
        "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "k-9"}
    )
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert project_count(db) == 2


def test_a_token_allowed_less_gets_no_replay(app, db, project_body):
    """Same user, same key, same body, but a token without ``projects:write``: the replay
    would hand it what only the stronger token may have (a new token or secret, elsewhere);
    it gets the operation's own answer, a 403."""
    user = make_user(app)
    body = project_body()
    writer = signed_in_client(app, user, ["projects:read", "projects:write"])
    reader = signed_in_client(app, user, ["projects:read"])
    assert (
        writer.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-10"}).status_code
        == 201
    )
    refused = reader.post("/api/v1/projects", json=body, headers={"Idempotency-Key": "k-10"})
    assert refused.status_code == 403
    assert "Idempotent-Replayed" not in refused.headers
    assert refused.json["type"] == "urn:mars:problem:insufficient-scope"
    assert project_count(db) == 1
