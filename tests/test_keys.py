"""The keyring of sealed values: ``MARS_ENCRYPTION_KEYS`` (the first encrypts, all decrypt),
the upgrade from the key derived from ``MARS_SECRET_KEY``, ``mars keys rotate`` and the
warnings of ``mars check`` (docs/privacy.md)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from mars_server import crypto
from mars_server.config import ConfigError
from mars_server.events import enqueue
from mars_server.events.models import Job
from mars_server.models import IdempotencyKey
from mars_server.ops import keys
from mars_server.webhooks.models import WebhookEndpoint

NEW = Fernet.generate_key().decode()
NEWER = Fernet.generate_key().decode()
SCOPES = ["account:read", "account:write", "projects:read", "webhooks:write"]
HOOK = {"url": "https://hooks.example.com/in", "events": ["project.created"]}


@pytest.fixture
def keyring(app, monkeypatch):
    """Set ``MARS_ENCRYPTION_KEYS`` of the (reused) app for this test only."""

    def use(*entries: str) -> None:
        monkeypatch.setitem(app.config["MARS"], "ENCRYPTION_KEYS", list(entries))

    return use


def legacy_seal(app, raw: bytes) -> str:
    """A value as MARS sealed it before keyrings: a bare Fernet token under the derived key."""
    return Fernet(crypto._derived_key(app.config["SECRET_KEY"])).encrypt(raw).decode()


def sealed_data(app, db, client, headers):
    """A webhook endpoint (its secret), a replayable response and a queued mail, the endpoint's
    secret and the mail as older versions sealed them."""
    created = client.post("/api/v1/webhooks", json=HOOK, headers=headers)
    assert created.status_code == 201
    replayed = client.post(
        "/api/v1/me/tokens",
        json={"name": "ci", "scopes": ["account:read"]},
        headers=headers | {"Idempotency-Key": "rotation"},
    )
    assert replayed.status_code == 201
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, created.json["id"])
        endpoint.secret_sealed = legacy_seal(app, created.json["secret"].encode())
        enqueue("mail.send", message=legacy_seal(app, b"Subject: hi\n\nhello"), template="t")
        db.session.commit()
    return created.json, replayed


def stored_prefixes(db) -> set[str]:
    values = list(db.session.scalars(sa.select(WebhookEndpoint.secret_sealed)))
    values += [row.decode() for row in db.session.scalars(sa.select(IdempotencyKey.response_body))]
    values += [job.kwargs["message"] for job in db.session.scalars(sa.select(Job)) if job.kwargs]
    db.session.rollback()
    return {value.split(":")[0] if ":" in value else "legacy" for value in values}


def test_a_new_key_rotates_everything_and_the_derived_key_can_go(
    app, db, create_user, auth_headers, keyring
):
    client = app.test_client()
    headers = auth_headers(create_user(), SCOPES)
    hook, first = sealed_data(app, db, client, headers)
    runner = app.test_cli_runner()

    keyring(NEW, crypto.DERIVED)
    new_id = crypto.key_id_of(NEW.encode())
    with app.app_context():
        derived_id = crypto.key_id_of(crypto._derived_key(app.config["SECRET_KEY"]))
        assert stored_prefixes(db) == {"legacy", derived_id}
        left = keys.outstanding()
        assert sum(left.values()) >= 3
        assert any("run `mars keys rotate`" in warning for warning in keys.warnings())
    status = runner.invoke(args=["keys", "status"])
    assert status.exit_code == 0, status.output
    assert f"keys (the first encrypts): {new_id}, derived" in status.output
    assert NEW not in status.output

    rotated = runner.invoke(args=["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "webhook_endpoints.secret_sealed: 1 re-encrypted" in rotated.output
    assert "mars_jobs.kwargs: 1 re-encrypted" in rotated.output
    assert "mars_idempotency_keys.response_body: 1 re-encrypted" in rotated.output
    assert "values under keys other than the first: 0" in rotated.output
    with app.app_context():
        assert stored_prefixes(db) == {new_id}
        assert keys.warnings() == []
        (details,) = db.session.scalars(
            sa.text("SELECT details FROM mars_audit_log WHERE action = 'keys.rotated'")
        )
        assert '"resealed": 3' in str(details).replace("'", '"')

    # Again: nothing left to do (it can be run any number of times).
    again = runner.invoke(args=["keys", "rotate"])
    assert "re-encrypted: 0" in again.output

    keyring(NEW)  # the derived key is gone: everything still opens
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, hook["id"])
        assert crypto.open_sealed(endpoint.secret_sealed).decode() == hook["secret"]
        job = db.session.scalars(sa.select(Job).where(Job.task == "mail.send")).one()
        assert crypto.open_sealed(job.kwargs["message"]).endswith(b"hello")
        db.session.rollback()
    replay = client.post(
        "/api/v1/me/tokens",
        json={"name": "ci", "scopes": ["account:read"]},
        headers=headers | {"Idempotency-Key": "rotation"},
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["token"] == first.json["token"]


def test_a_key_removed_too_early_is_reported_never_lost_silently(
    app, db, create_user, auth_headers, keyring
):
    client = app.test_client()
    headers = auth_headers(create_user(), SCOPES)
    sealed_data(app, db, client, headers)
    keyring(NEW)  # the derived key dropped before rotating
    with app.app_context():
        (warning,) = keys.warnings()
        assert "cannot be read" in warning and "put the key back" in warning
    rotated = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "were left as they are" in rotated.output
    keyring(NEW, crypto.DERIVED)  # put back: nothing was lost
    rotated = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert "values under keys other than the first: 0" in rotated.output


def test_rotation_goes_in_batches_and_picks_up_where_it_stopped(
    app, db, create_user, auth_headers, keyring, monkeypatch
):
    client = app.test_client()
    headers = auth_headers(create_user(), ["projects:read", "webhooks:write"])
    for number in range(7):
        body = HOOK | {"url": f"https://hooks.example.com/{number}"}
        assert client.post("/api/v1/webhooks", json=body, headers=headers).status_code == 201
    monkeypatch.setattr(keys, "BATCH", 2)
    keyring(NEW, crypto.DERIVED)
    with app.app_context():
        assert keys.rotate().by_column["webhook_endpoints.secret_sealed"] == 7
    keyring(NEWER, NEW)  # the next rotation, stopped after the first column's third batch
    calls = []
    real = keys._reseal

    def stopping(keyring_, value, rotation):
        calls.append(value)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(keyring_, value, rotation)

    monkeypatch.setattr(keys, "_reseal", stopping)
    with app.app_context(), pytest.raises(KeyboardInterrupt):
        keys.rotate()
    with app.app_context():
        db.session.rollback()
        assert keys.outstanding() == {crypto.key_id_of(NEW.encode()): 3}
    monkeypatch.setattr(keys, "_reseal", real)
    with app.app_context():
        assert keys.rotate().resealed == 3
        assert keys.outstanding() == {}


def test_a_sealed_column_is_plain_to_the_code_and_sealed_in_the_database(
    app, db, keyring, monkeypatch
):
    table = sa.Table(
        "test_sealed_notes",
        db.metadata,
        # a composite key: rotation pages through it as a tuple
        sa.Column("owner", sa.String(10), primary_key=True),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("note", crypto.Sealed()),
    )
    keyring(NEW)
    try:
        with app.app_context():
            table.create(db.engine)
            db.session.execute(
                table.insert(),
                [{"owner": "ada", "id": n, "note": "Ada's birthday"} for n in range(3)]
                + [{"owner": "bo", "id": 1, "note": "Bo's"}],
            )
            db.session.commit()
            assert db.session.scalar(sa.select(table.c.note).where(table.c.id == 0)) == (
                "Ada's birthday"
            )
            raw = db.session.scalar(sa.text("SELECT note FROM test_sealed_notes LIMIT 1"))
            assert "Ada" not in raw and raw.startswith(crypto.key_id_of(NEW.encode()) + ":")
            assert "test_sealed_notes.note" in [column.name for column in keys.sealed_columns()]
        keyring(NEWER, NEW)
        monkeypatch.setattr(keys, "BATCH", 2)
        with app.app_context():
            assert keys.rotate().by_column["test_sealed_notes.note"] == 4
            assert set(db.session.scalars(sa.select(table.c.note))) == {"Ada's birthday", "Bo's"}
            assert keys.outstanding() == {}
    finally:
        with app.app_context():
            db.session.rollback()
            table.drop(db.engine)
        db.metadata.remove(table)


def test_the_keyring_setting_is_checked_and_never_echoed(tmp_path):
    from mars_server import create_app
    from mars_server.testing import settings_for_tests

    almost = NEW[:-2] + "!!"
    with pytest.raises(ConfigError) as error:
        create_app(settings_for_tests("sqlite://", tmp_path, ENCRYPTION_KEYS=[NEW, almost]))
    (problem,) = error.value.problems
    assert problem.startswith("MARS_ENCRYPTION_KEYS:") and "mars keys generate" in problem
    assert almost not in problem and NEW not in problem


def test_generate_prints_a_key_the_setting_accepts(app):
    result = app.test_cli_runner().invoke(args=["keys", "generate"])
    key = result.output.strip()
    assert crypto.valid_key(key) and key != crypto.generate_key()


def test_production_is_told_to_set_a_keyring(app, monkeypatch):
    monkeypatch.setitem(app.config["MARS"], "ENV", "production")
    with app.app_context():
        assert any("MARS_ENCRYPTION_KEYS is not set" in warning for warning in keys.warnings())


def test_values_from_before_keyrings_are_not_outstanding_while_derived_is_first(
    app, db, create_user, auth_headers
):
    sealed_data(app, db, app.test_client(), auth_headers(create_user(), SCOPES))
    with app.app_context():
        assert keys.outstanding() == {}
        assert keys.warnings() == []
