"""The audit log: entries in the caller's transaction, redaction, the hash chain and its
verification, the append-only trigger, the admin API and ``mars audit tail``."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.audit import chain
from mars_server.audit.models import AuditRecord
from mars_server.audit.records import REDACTED, is_secret_key
from mars_server.auth import accounts
from mars_server.db import db as mars_db
from mars_server.db import utcnow
from mars_server.events import ActingContext, acting_as, audit
from mars_server.testing import TEST_SECRET_KEY, make_token, make_user, run_due_jobs

BIN = Path(sys.executable).parent
TABLE = AuditRecord.__table__


def entries(**where) -> list[AuditRecord]:
    mars_db.session.expire_all()
    stmt = sa.select(AuditRecord).order_by(AuditRecord.occurred_at, AuditRecord.id)
    for column, value in where.items():
        stmt = stmt.where(getattr(AuditRecord, column) == value)
    return list(mars_db.session.scalars(stmt))


def write(count: int, action: str = "thing.inspected", **context) -> list[str]:
    """Commit ``count`` entries (one transaction each); return their ids."""
    acting = ActingContext(**({"actor_id": "usr_ada"} | context))
    before = {r.id for r in entries()}
    with acting_as(acting):
        for n in range(count):
            audit(action, target=f"thg_{n}", n=n)
            mars_db.session.commit()
    return [r.id for r in entries() if r.id not in before]


def seal_all() -> None:
    while chain.seal():
        mars_db.session.commit()
    mars_db.session.commit()


def is_postgres() -> bool:
    return mars_db.engine.dialect.name == "postgresql"


@contextlib.contextmanager
def superuser():
    """A transaction that writes past the append-only trigger, as a database superuser can
    (``session_replication_role = replica`` skips ordinary triggers); plain SQL on SQLite."""
    with mars_db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield conn


def verify(runner, *args: str):
    return runner.invoke(args=["audit", "verify", *args])


# --- Writing --------------------------------------------------------------------------------------


def test_an_entry_exists_only_if_its_change_commits(app, db, create_user):
    user = create_user(email="rollback@example.test")
    accounts.grant_role(db.session.get(accounts.User, user.id), "admin", commit=False)
    db.session.rollback()
    assert entries(action="auth.role_granted") == []
    assert db.session.get(accounts.User, user.id).role_names == {"member"}

    accounts.grant_role(db.session.get(accounts.User, user.id), "admin", commit=False)
    db.session.commit()
    [granted] = entries(action="auth.role_granted")
    assert (granted.target, granted.details) == (user.id, {"role": "admin"})
    assert granted.seq is None and granted.hash is None  # sealed later, by the sealer


def test_the_acting_context_is_recorded(app, db):
    context = ActingContext("usr_ada", "192.0.2.7", "ua/1.0", "req-0001")
    with acting_as(context):
        audit("thing.inspected", target="thg_1", reason="curiosity")
    db.session.commit()
    [row] = entries()
    assert row.id.startswith("aud_")
    assert (row.actor_id, row.address, row.user_agent, row.request_id) == (
        "usr_ada",
        "192.0.2.7",
        "ua/1.0",
        "req-0001",
    )
    assert (row.action, row.target, row.details) == (
        "thing.inspected",
        "thg_1",
        {"reason": "curiosity"},
    )
    assert abs(row.occurred_at - utcnow()) < dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("new_password", True),
        ("currentPassword", True),
        ("refresh_token", True),
        ("token", True),
        ("client_secret", True),
        ("Authorization", True),
        ("code", True),
        ("auth_code", True),
        ("api_key", True),
        ("code_verifier", True),
        ("token_id", False),
        ("tokens_revoked", False),
        ("secret_hint", False),
        ("previous_secret_valid_until", False),
        ("status_code", False),
        ("country_code", False),
        ("idempotency_key", False),
        ("name", False),
    ],
)
def test_secret_looking_keys(key, secret):
    assert is_secret_key(key) is secret


def test_details_never_keep_secrets(app, db):
    audit(
        "thing.inspected",
        target="thg_1",
        password="hunter2-hunter2",
        nested={"clientSecret": "s3cr3t-value", "items": [{"access_token": "at-123456"}]},
        header="Bearer abcdefghijklmnopqrstuvwxyz0123",
        note="pasted mars_pat_AbCdEfGhIjKlMnOpQrStUv123456 by mistake",
        must_change_password=True,
        when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        tags={"b", "a"},
        nul="a\x00b",
    )
    db.session.commit()
    [row] = entries()
    assert row.details == {
        "password": REDACTED,
        "nested": {"clientSecret": REDACTED, "items": [{"access_token": REDACTED}]},
        "header": REDACTED,
        "note": f"pasted {REDACTED} by mistake",
        "must_change_password": True,  # a flag says that, never what
        "when": "2026-01-02T03:04:05+00:00",
        "tags": ["a", "b"],
        "nul": "ab",
    }
    dump = json.dumps([list(r) for r in db.session.execute(sa.select(TABLE))], default=str)
    for secret in ("hunter2", "s3cr3t", "at-123456", "abcdefghijklmnop", "AbCdEfGhIjKl"):
        assert secret not in dump


def test_oversized_values_are_clipped_not_refused(app, db):
    with acting_as(ActingContext("x" * 300, "y" * 300, "z" * 900, "r" * 300)):
        audit("a" * 300, target="t" * 300)
    db.session.commit()
    [row] = entries()
    assert (len(row.actor_id), len(row.action), len(row.target), len(row.user_agent)) == (
        200,
        100,
        200,
        500,
    )


# --- Sealing and verifying ------------------------------------------------------------------------


def test_the_scheduled_task_seals_a_verifiable_chain(app, db, runner):
    ids = write(5)
    run_due_jobs(app)  # the relay enqueues `audit.seal` (due at once), the worker runs it
    rows = entries()
    assert [r.id for r in rows] == ids
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == chain.GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert all(r.hash == chain.row_hash(r) for r in rows)
    write(2)
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "audit log intact: 5 sealed row(s); 2 row(s) await sealing" in result.output
    assert f"head: 5:{rows[-1].hash}" in result.output


def test_seal_command_and_an_empty_log(app, db, runner):
    empty = verify(runner)
    assert empty.exit_code == 0 and "intact: 0 sealed row(s); 0 row(s) await" in empty.output
    write(3)
    sealed = runner.invoke(args=["audit", "seal"])
    assert sealed.exit_code == 0, sealed.output
    assert sealed.output.startswith("3 row(s) sealed; head: 3:")
    assert runner.invoke(args=["audit", "seal"]).output.startswith("0 row(s) sealed; head: 3:")
    assert "intact: 3 sealed row(s); 0 row(s) await" in verify(runner).output


def test_the_sealer_logs_committed_heads_only(app, db, caplog):
    """Logs shipped elsewhere are anchors: a head is logged once it is committed, never when
    its transaction rolled back."""
    caplog.set_level("INFO", logger="mars_server.audit.chain")
    write(2)
    assert chain.seal() == 2
    db.session.rollback()
    assert not [r for r in caplog.records if "sealed" in r.getMessage()]
    assert chain.seal() == 2
    assert chain.seal() == 0
    db.session.commit()
    [logged] = [r for r in caplog.records if "sealed" in r.getMessage()]
    head = chain.head()
    assert logged.getMessage() == f"audit log: 2 row(s) sealed; head seq 2 hash {head[1]}"
    assert (logged.audit_head_seq, logged.audit_head_hash) == head


def test_a_backlog_is_sealed_batch_by_batch(app, db, monkeypatch):
    monkeypatch.setattr(chain, "BATCH", 3)
    write(7)
    run_due_jobs(app)  # 3, then the task enqueues itself: 3 more, then 1
    assert [r.seq for r in entries()] == list(range(1, 8))
    assert chain.verify().ok


def test_late_commits_are_chained_after_what_was_sealed(app, db, runner):
    """A transaction that began first but committed last is sealed in a later batch: the
    chain's order is the order of sealing, and stays verifiable."""
    early = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    write(2)
    seal_all()
    with time_machine.travel(early, tick=False):
        [late] = write(1)
    seal_all()
    rows = sorted(entries(), key=lambda r: r.seq)
    assert rows[-1].id == late and rows[-1].seq == 3
    assert verify(runner).exit_code == 0


def test_concurrent_writers_and_sealers_never_fork_the_chain(app, db):
    errors: list[BaseException] = []
    writing = threading.Event()

    def writer(n: int) -> None:
        try:
            with app.app_context():
                for i in range(15):
                    audit("thing.inspected", target=f"thg_{n}_{i}")
                    mars_db.session.commit()
        except BaseException as error:
            errors.append(error)

    def sealer() -> None:
        try:
            with app.app_context():
                while writing.is_set():
                    chain.seal()
                    mars_db.session.commit()
        except BaseException as error:
            errors.append(error)

    writing.set()
    sealers = [threading.Thread(target=sealer) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in sealers + writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    writing.clear()
    for thread in sealers:
        thread.join(120)
    assert errors == []
    seal_all()
    rows = sorted(entries(), key=lambda r: r.seq)
    assert [r.seq for r in rows] == list(range(1, 61))
    assert len({r.prev_hash for r in rows}) == 60  # no two rows follow the same row
    assert chain.verify().ok


# --- Tampering ------------------------------------------------------------------------------------


@pytest.fixture
def sealed(app, db):
    """Five sealed entries; returns them in chain order."""
    write(5)
    seal_all()
    return sorted(entries(), key=lambda r: r.seq)


def assert_broken_at(runner, seq: int, *words: str) -> str:
    result = verify(runner)
    assert result.exit_code == 1, result.output
    assert f"audit log BROKEN: seq {seq} " in result.output
    for word in words:
        assert word in result.output
    return result.output


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor_id", "usr_someone_else"),
        ("details", '{"n": 99}'),
        ("occurred_at", "2001-01-01 00:00:00"),
        ("action", "thing.forgotten"),
    ],
)
def test_verify_detects_a_modified_field(app, runner, sealed, column, value):
    with superuser() as conn:
        conn.execute(
            sa.update(TABLE).where(TABLE.c.seq == 3).values({column: sa.text(f"'{value}'")})
        )
    output = assert_broken_at(runner, 3, sealed[2].id, "modified")
    assert "the 2 row(s) before it are intact" in output


@pytest.mark.mars_backend("postgresql")  # SQLite has no trigger to disable
def test_verify_detects_a_modification_with_the_trigger_disabled(app, db, runner, sealed):
    with mars_db.engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE mars_audit_log DISABLE TRIGGER mars_audit_log_append_only"
        )
        conn.execute(sa.update(TABLE).where(TABLE.c.seq == 2).values(target="thg_other"))
        conn.exec_driver_sql("ALTER TABLE mars_audit_log ENABLE TRIGGER mars_audit_log_append_only")
    assert_broken_at(runner, 2, "modified")


def test_verify_detects_a_deleted_row(app, runner, sealed):
    with superuser() as conn:
        conn.execute(sa.delete(TABLE).where(TABLE.c.seq == 3))
    assert_broken_at(runner, 4, "seq 3 missing before it (deleted)", "prev_hash")


def test_verify_detects_a_deleted_first_row(app, runner, sealed):
    with superuser() as conn:
        conn.execute(sa.delete(TABLE).where(TABLE.c.seq == 1))
    assert_broken_at(runner, 2, "seq 1 missing")


def test_an_anchor_detects_rows_deleted_from_the_end(app, runner, sealed):
    anchor = f"5:{sealed[-1].hash}"
    assert verify(runner, "--anchor", anchor).exit_code == 0
    with superuser() as conn:
        conn.execute(sa.delete(TABLE).where(TABLE.c.seq >= 4))
    assert verify(runner).exit_code == 0  # the rest is a valid chain: only an anchor knows
    result = verify(runner, "--anchor", anchor)
    assert result.exit_code == 1
    assert "anchor seq 5 is gone" in result.output
    assert verify(runner, "--anchor", "5:nothex").exit_code == 2


def test_verify_detects_an_inserted_forged_row(app, db, runner, sealed):
    """Even a forger who knows the algorithm, and gives their row a valid hash, breaks the
    link to the row after it."""
    with superuser() as conn:
        for seq in (5, 4):  # make room at 4
            conn.execute(sa.update(TABLE).where(TABLE.c.seq == seq).values(seq=seq + 1))
        forged = AuditRecord(
            id="aud_forged",
            occurred_at=sealed[2].occurred_at,
            actor_id="usr_ada",
            action="thing.inspected",
            target="thg_alibi",
            details={},
            seq=4,
            prev_hash=sealed[2].hash,
        )
        forged.hash = chain.row_hash(forged)
        conn.execute(
            sa.insert(TABLE).values({c.key: getattr(forged, c.key) for c in TABLE.columns})
        )
    assert_broken_at(runner, 5, sealed[3].id, "prev_hash")


def test_verify_detects_a_forged_row_appended_with_a_wrong_hash(app, runner, sealed):
    with superuser() as conn:
        conn.execute(
            sa.insert(TABLE).values(
                id="aud_forged",
                occurred_at=utcnow(),
                action="thing.inspected",
                details={},
                seq=6,
                prev_hash=sealed[-1].hash,
                hash="f" * 64,
            )
        )
    assert_broken_at(runner, 6, "aud_forged", "modified")


def test_verify_detects_an_unchained_row_posing_as_sealed(app, runner, sealed):
    with superuser() as conn:
        conn.execute(
            sa.insert(TABLE).values(
                id="aud_fake", occurred_at=utcnow(), action="x", details={}, hash="a" * 64
            )
        )
    result = verify(runner)
    assert result.exit_code == 1
    assert "aud_fake: a hash but no place in the chain" in result.output


def test_verify_detects_a_renumbered_row(app, runner, sealed):
    with superuser() as conn:
        conn.execute(sa.update(TABLE).where(TABLE.c.seq == 3).values(seq=0))
    assert_broken_at(runner, 0, sealed[2].id, "its seq should be at least 1")


@pytest.mark.mars_backend("sqlite")  # PostgreSQL refuses what is not JSON in a json column
def test_verify_reports_a_value_no_writer_could_store(app, db, runner, sealed):
    with superuser() as conn:
        conn.exec_driver_sql("UPDATE mars_audit_log SET details = '{not json' WHERE seq = 4")
    result = verify(runner)
    assert result.exit_code == 1
    assert "the row after seq 3 cannot be read (JSONDecodeError): modified" in result.output


def test_verify_detects_swapped_rows(app, runner, sealed):
    with superuser() as conn:
        conn.execute(sa.update(TABLE).where(TABLE.c.seq == 2).values(seq=-2))
        conn.execute(sa.update(TABLE).where(TABLE.c.seq == 3).values(seq=2))
        conn.execute(sa.update(TABLE).where(TABLE.c.seq == -2).values(seq=3))
    assert_broken_at(runner, 2, sealed[2].id, "prev_hash")


# --- The append-only trigger (PostgreSQL) ---------------------------------------------------------


@pytest.mark.mars_backend("postgresql")  # on SQLite, whoever can write the file can change it
def test_the_database_refuses_updates_and_deletes(app, db, sealed):
    write(1)
    unsealed = next(r for r in entries() if r.seq is None)
    refused = [
        sa.update(TABLE).where(TABLE.c.seq == 1).values(actor_id="usr_mallory"),
        sa.update(TABLE).where(TABLE.c.seq == 1).values(seq=100),  # re-sealing
        sa.update(TABLE).where(TABLE.c.id == unsealed.id).values(details={"n": 1}),
        sa.update(TABLE)  # sealing that also changes what happened
        .where(TABLE.c.id == unsealed.id)
        .values(seq=6, prev_hash="0" * 64, hash="0" * 64, target="thg_other"),
        sa.delete(TABLE).where(TABLE.c.seq == 1),
        sa.delete(TABLE).where(TABLE.c.id == unsealed.id),
    ]
    for statement in refused:
        with (
            pytest.raises(sa.exc.DBAPIError, match="mars_audit_log is append-only"),
            mars_db.engine.begin() as conn,
        ):
            conn.execute(statement)
    assert len(entries()) == 6
    seal_all()  # what the trigger lets through: sealing an unsealed row, once
    assert chain.verify().ok and chain.verify().sealed == 6


def test_the_audit_branch_goes_down_and_up_again(app, db):
    import flask_migrate

    from mars_server.ops import migrations

    def trigger_exists() -> bool:
        if not is_postgres():
            return False
        query = "SELECT count(*) FROM pg_trigger WHERE tgname = 'mars_audit_log_append_only'"
        with mars_db.engine.connect() as conn:
            return bool(conn.exec_driver_sql(query).scalar())

    assert trigger_exists() is is_postgres()
    flask_migrate.downgrade(revision="audit@base")
    try:
        assert "mars_audit_log" not in sa.inspect(mars_db.engine).get_table_names()
        assert not trigger_exists()
    finally:
        migrations.upgrade()
    assert "mars_audit_log" in sa.inspect(mars_db.engine).get_table_names()
    assert trigger_exists() is is_postgres()


# --- The admin API ------------------------------------------------------------------------------


@pytest.fixture
def admin_headers(app):
    admin = make_user(app, email="auditor@example.test", roles=("admin",))
    return {"Authorization": f"Bearer {make_token(app, admin, ['audit:read'])}"}


def listed(client, headers, **query):
    response = client.get("/api/v1/audit", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def test_only_admins_read_the_audit_log(app, client, admin_headers):
    write(1)
    anonymous = app.test_client().get("/api/v1/audit")
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"] == "application/problem+json"
    assert client.get("/api/v1/audit").status_code == 403  # a member, with every scope
    admin = make_user(app, roles=("admin",))
    unscoped = {"Authorization": f"Bearer {make_token(app, admin, ['users:read'])}"}
    assert app.test_client().get("/api/v1/audit", headers=unscoped).status_code == 403
    items = listed(app.test_client(), admin_headers)["items"]
    [item] = [i for i in items if i["action"] == "thing.inspected"]
    assert app.test_client().get(f"/api/v1/audit/{item['id']}").status_code == 401
    assert client.get(f"/api/v1/audit/{item['id']}").status_code == 403


def test_the_api_filters_and_pages(app, db, admin_headers):
    client = app.test_client()
    start = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        write(2, "project.created", actor_id="usr_ada")
        clock.shift(dt.timedelta(hours=1))
        write(2, "project.deleted", actor_id="usr_bob")
        clock.shift(dt.timedelta(hours=1))
        write(1, "auth.signed_in", actor_id="usr_bob")
    seal_all()

    everything = listed(client, admin_headers)["items"]
    ours = [i for i in everything if i["action"] != "auth.token_created"]  # the admin's token
    assert [i["action"] for i in ours] == ["project.created"] * 2 + ["project.deleted"] * 2 + [
        "auth.signed_in"
    ]
    first = next(i for i in ours if i["target"] == "thg_0")
    assert first["seq"] is not None and len(first["hash"]) == 64
    assert first["details"] == {"n": 0} and first["target"] == "thg_0"

    def actions(**query):
        return [i["action"] for i in listed(client, admin_headers, **query)["items"]]

    assert actions(actor="usr_bob") == ["project.deleted", "project.deleted", "auth.signed_in"]
    assert actions(action="project.deleted") == ["project.deleted"] * 2
    assert actions(action="project.*") == ["project.created"] * 2 + ["project.deleted"] * 2
    assert actions(action="project.") == actions(action="project.*")
    assert actions(action="project") == []  # exact unless it ends with * or .
    assert actions(target="thg_1", actor="usr_ada") == ["project.created"]
    hour = dt.timedelta(hours=1)
    assert (
        actions(since=(start + hour).isoformat(), until=(start + 2 * hour).isoformat())
        == ["project.deleted"] * 2
    )
    assert actions(since=(start + 2 * hour).isoformat(), actor="usr_bob") == ["auth.signed_in"]

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, "action": "project.*"} | ({"cursor": cursor} if cursor else {})
        response = client.get("/api/v1/audit", query_string=query, headers=admin_headers)
        assert response.status_code == 200
        page = response.json
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            assert "Link" not in response.headers
            break
        assert 'rel="next"' in response.headers["Link"]
    assert pages == 2 and seen == [i["id"] for i in ours[:4]]

    one = client.get(f"/api/v1/audit/{first['id']}", headers=admin_headers)
    assert one.status_code == 200 and one.json == first
    missing = client.get("/api/v1/audit/aud_nope", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-05-01T12:00:00"},  # naive: which zone?
        {"until": "yesterday"},
        {"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+05:00"},
        {"actor": ""},
        {"colour": "red"},
        {"limit": 0},
    ],
)
def test_bad_filters_are_problems(app, admin_headers, query):
    response = app.test_client().get("/api/v1/audit", query_string=query, headers=admin_headers)
    assert response.status_code == 422, response.json
    assert response.headers["Content-Type"] == "application/problem+json"


# --- mars audit tail ------------------------------------------------------------------------------


def test_tail_prints_the_newest_entries(app, db, runner):
    with acting_as(ActingContext("usr_ada", "192.0.2.7", "ua/1", "req-00000001")):
        for n in range(4):
            audit("thing.inspected", target=f"thg_{n}", n=n)
            db.session.commit()
    seal_all()
    result = runner.invoke(args=["audit", "tail", "-n", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "thg_2" in lines[0] and "thg_3" in lines[1]  # the newest, oldest of them first
    assert lines[1].split("  ")[1:] == [
        "#4",
        "usr_ada",
        "thing.inspected",
        "thg_3",
        "192.0.2.7",
        "req=req-00000001",
        '{"n":3}',
    ]
    as_json = runner.invoke(args=["audit", "tail", "-n", "3", "--json", "--target", "thg_0"])
    [record] = [json.loads(line) for line in as_json.output.splitlines()]
    assert (record["target"], record["seq"], record["details"]) == ("thg_0", 1, {"n": 0})


def test_tail_follow_prints_entries_as_they_commit(app, db, tmp_path):
    write(1, "thing.before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")} | {
        "MARS_ENV": "testing",
        "MARS_SECRET_KEY": TEST_SECRET_KEY,
        "MARS_DATABASE_URL": app.config["MARS"]["DATABASE_URL"],
        "MARS_INSTANCE_PATH": str(tmp_path / "follower"),
        "MARS_LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [str(BIN / "mars"), "audit", "tail", "-n", "1", "--follow", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    try:
        assert "thing.before" in lines.get(timeout=60)
        write(1, "thing.after")
        assert "thing.after" in lines.get(timeout=30)
        write(1, "thing.later")
        assert "thing.later" in lines.get(timeout=30)
        with pytest.raises(queue.Empty):
            lines.get(timeout=1)  # nothing printed twice
    finally:
        process.terminate()
        process.wait(30)
        reader.join(10)
