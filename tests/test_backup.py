"""``mars backup``: a backup taken while MARS serves restores everything; damage is found.

The round trip runs on both backends against the test's own database: data through the
API, a backup while another client writes, the database wiped, the backup restored, then
the same answers, the same tokens, the same webhook secrets and an intact audit chain.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import time_machine
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from mars_server import __version__, testing
from mars_server.db import db as flask_db
from mars_server.ops import backup
from mars_server.ops.models import BackupRecord
from mars_server.testing import TEST_SECRET_KEY, make_token, make_user
from tests.webhook_receiver import Receiver

PROJECTS = "/api/v1/projects"


def project(name: str) -> dict[str, str]:
    return {"name": name, "slug": name.lower()}


METRICS_TOKEN = "metrics-token-for-the-backup-tests"


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True, "METRICS_TOKEN": METRICS_TOKEN}


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def seal(runner) -> tuple[int, str]:
    result = runner.invoke(args=["audit", "seal"])
    assert result.exit_code == 0, result.output
    seq, digest = result.output.strip().rsplit("head: ", 1)[1].split(":")
    return int(seq), digest


@pytest.fixture(autouse=True)
def _no_engine_keeps_the_replaced_file():
    """A SQLite restore replaces the database file: every app this process keeps for later
    tests must drop its pooled connections, or they would go on using the old, unlinked
    file (a restore is made with MARS stopped, for the same reason)."""
    yield
    for kept, _ in testing._REUSABLE.values():
        with kept.app_context():
            for engine in flask_db.engines.values():
                engine.dispose()


def wipe(db) -> None:
    """Lose the database: the SQLite file goes, or every table of PostgreSQL's."""
    db.session.remove()
    db.engine.dispose()
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
        return
    backup.empty_postgres(url)


class Writer(threading.Thread):
    """Other clients creating projects, one after the other, until stopped: a few people,
    as each may create 30 a minute, and a pause between requests, as people do."""

    def __init__(self, base: str, tokens: list[str]) -> None:
        super().__init__(daemon=True)
        self.base, self.tokens = base, tokens
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                number = len(self.statuses)
                answer = http.post(
                    self.base + PROJECTS,
                    json=project(f"w{number}"),
                    headers={"Authorization": f"Bearer {self.tokens[number % len(self.tokens)]}"},
                )
                self.statuses.append(answer.status_code)
                time.sleep(0.02)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.statuses) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.statuses) >= count, "the writer is stuck"


def test_a_backup_taken_while_serving_restores_everything(
    app, db, live_server, runner, receiver, run_jobs, tmp_path
):
    ada = make_user(app, email="ada@example.test", display_name="Ada")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {make_token(app, ada)}"
    for name in ("Apollo", "Gemini", "Mercury"):
        assert http.post(live_server + PROJECTS, json=project(name)).status_code == 201
    run_jobs()  # the three projects' events, before anyone subscribes
    hook = http.post(
        live_server + "/api/v1/webhooks",
        json={"url": receiver.url(), "events": ["project.created"]},
    ).json()
    seal(runner)
    reads = ["/api/v1/me", PROJECTS, "/api/v1/webhooks", f"/api/v1/webhooks/{hook['id']}"]
    before = {path: http.get(live_server + path).json() for path in reads}

    writer = Writer(live_server, [make_token(app, make_user(app)) for _ in range(8)])
    writer.start()
    writer.wait_for(5)
    archive = tmp_path / "backup.tar"
    created = runner.invoke(args=["backup", "create", "--out", str(archive)])
    written = len(writer.statuses)
    writer.wait_for(written + 5)  # requests went on being served during and after it
    writer.stop.set()
    writer.join(10)
    assert created.exit_code == 0, created.output
    assert set(writer.statuses) == {201}
    manifest = read_manifest(archive)
    # the copy holds some of the writes, not all: taken while they happened, and whole
    assert 3 + 5 <= manifest["tables"]["projects"] <= 3 + len(writer.statuses) - 5
    head = manifest["checks"]["audit"]
    assert head["head_seq"] > 0

    verified = runner.invoke(args=["backup", "verify", str(archive)])
    assert verified.exit_code == 0, verified.output
    lines = verified.output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "archive"],
        ["ok", "checksum"],
        ["ok", "restore"],
        ["ok", "migrations"],
        ["ok", "rows"],
        ["ok", "audit"],
    ]
    assert f"head {head['head_seq']}:" in lines[-1]

    wipe(db)
    assert http.get(live_server + "/api/v1/me").status_code >= 500  # nothing left
    url = db.engine.url.render_as_string(hide_password=False)
    restored = runner.invoke(args=["backup", "restore", str(archive)])  # the configured one
    assert restored.exit_code == 0, restored.output
    db.engine.dispose()
    assert runner.invoke(args=["db", "check"]).exit_code == 0
    check = subprocess.run(
        [str(Path(sys.executable).with_name("mars")), "check"],
        env={k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
        | {
            "MARS_ENV": "testing",
            "MARS_SECRET_KEY": TEST_SECRET_KEY,
            "MARS_DATABASE_URL": url,
            "MARS_INSTANCE_PATH": str(tmp_path / "check"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (check.returncode, check.stdout.strip()) == (
        0,
        f"MARS {__version__}: configuration, plugins and database are fine.",
    ), check.stderr

    # the same answers, with the same token
    assert {path: http.get(live_server + path).json() for path in reads} == before
    # the writes the copy holds are there, the others are not
    count = db.session.scalar(sa.text("SELECT count(*) FROM projects"))
    assert count == manifest["tables"]["projects"]
    # the webhook's secret still signs
    assert http.post(live_server + PROJECTS, json=project("Artemis")).status_code == 201
    run_jobs()
    [delivery] = receiver.wait_for(1)
    assert Webhook(hook["secret"]).verify(delivery.body, delivery.headers)["data"]["name"] == (
        "Artemis"
    )
    # and the audit chain holds the head the backup recorded
    anchor = f"{head['head_seq']}:{head['head_hash']}"
    audit = runner.invoke(args=["audit", "verify", "--anchor", anchor])
    assert audit.exit_code == 0, audit.output
    assert f"anchor {head['head_seq']}: found" in audit.output


def read_manifest(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("manifest.json"))


def rewrite(archive: Path, out: Path, *, manifest=None, payload=None, compress=True) -> Path:
    """``archive`` again with its manifest and database copy changed by the callables."""
    with tarfile.open(archive) as tar:
        document = json.load(tar.extractfile("manifest.json"))
        name = document["payload"]["name"]
        data = tar.extractfile(name).read()
    if payload is not None:
        data = payload(data)
    if manifest is not None:
        manifest(document)
    with tarfile.open(out, "w:gz" if compress else "w") as tar:
        for member, content in (("manifest.json", json.dumps(document).encode()), (name, data)):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out


@pytest.fixture
def archive(app, db, runner, tmp_path):
    user = make_user(app)
    token = make_token(app, user)
    client = app.test_client()
    for name in ("One", "Two"):
        response = client.post(
            PROJECTS, json=project(name), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201
    seal(runner)
    path = tmp_path / "good.tar"
    backup.create(path)
    return path


def verify_lines(runner, path: Path, *args: str) -> tuple[int, list[str]]:
    result = runner.invoke(args=["backup", "verify", str(path), *args])
    return result.exit_code, result.output.splitlines()


def test_a_damaged_archive_fails_verify_with_a_line_that_says_so(archive, runner, tmp_path):
    data = bytearray(archive.read_bytes())
    flipped = tmp_path / "flipped.tar"
    middle = len(data) // 2  # inside the database copy
    data[middle] ^= 0xFF
    flipped.write_bytes(bytes(data))
    code, lines = verify_lines(runner, flipped)
    assert code == 1
    assert lines[-1].startswith("FAIL  checksum")
    assert "the archive was damaged" in lines[-1]

    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:1500])
    code, lines = verify_lines(runner, cut)
    assert code == 1
    assert lines == [lines[0]] and lines[0].startswith("FAIL  archive")

    noise = tmp_path / "noise.tar"
    noise.write_bytes(os.urandom(4096))
    code, lines = verify_lines(runner, noise)
    assert (code, lines[0][:13]) == (1, "FAIL  archive")


def test_a_manifest_that_disagrees_with_the_copy_fails(archive, runner, tmp_path):
    def fewer_projects(document):
        document["tables"]["projects"] -= 1

    code, lines = verify_lines(
        runner, rewrite(archive, tmp_path / "a.tar", manifest=fewer_projects)
    )
    assert code == 1
    [rows] = [line for line in lines if "rows" in line.split()[:2]]
    assert rows.startswith("FAIL") and "projects: 2 restored, 1 recorded" in rows

    def another_head(document):
        document["checks"]["audit"]["head_hash"] = "0" * 64

    code, lines = verify_lines(runner, rewrite(archive, tmp_path / "b.tar", manifest=another_head))
    assert code == 1
    assert lines[-1].startswith("FAIL  audit") and "another hash" in lines[-1]

    def garbled(document):
        document["payload"]["sha256"] = "not a digest"

    code, lines = verify_lines(runner, rewrite(archive, tmp_path / "c.tar", manifest=garbled))
    assert (code, lines) == (
        1,
        [
            "FAIL  archive     the manifest is damaged: payload: "
            "{'sha256': ['String does not match expected pattern.']}"
        ],
    )


@pytest.mark.mars_backend("sqlite")
def test_an_audit_chain_edited_in_the_copy_fails(archive, runner, tmp_path):
    """The copy's checksum matches its manifest (both rewritten), but a sealed row changed:
    the audit check recomputes the chain."""
    import hashlib
    import sqlite3

    def edit(data: bytes) -> bytes:
        copy = tmp_path / "edit.sqlite"
        copy.write_bytes(data)
        with sqlite3.connect(copy) as connection:
            connection.execute("UPDATE mars_audit_log SET action = 'nothing' WHERE seq = 1")
        return copy.read_bytes()

    edited = edit(_payload(archive))

    def matching(document):
        document["payload"].update(size=len(edited), sha256=hashlib.sha256(edited).hexdigest())

    tampered = rewrite(archive, tmp_path / "t.tar", manifest=matching, payload=lambda _: edited)
    code, lines = verify_lines(runner, tampered)
    assert code == 1
    assert lines[1].startswith("ok    checksum")
    assert lines[-1].startswith("FAIL  audit") and "seq 1" in lines[-1]
    assert "does not match its hash" in lines[-1]


def _payload(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        name = json.load(tar.extractfile("manifest.json"))["payload"]["name"]
        return tar.extractfile(name).read()


def test_an_encrypted_backup_needs_its_key(app, runner, tmp_path):
    key = tmp_path / "backup.key"
    made = runner.invoke(args=["backup", "keygen", "--out", str(key)])
    assert made.exit_code == 0, made.output
    recipient = made.output.strip()
    assert recipient.startswith("age1")
    assert key.stat().st_mode & 0o777 == 0o600
    assert runner.invoke(args=["backup", "keygen", "--out", str(key)]).exit_code == 1

    sealed = tmp_path / "sealed.tar.age"
    created = runner.invoke(
        args=["backup", "create", "--out", str(sealed), "--recipient", recipient]
    )
    assert created.exit_code == 0, created.output
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert b"mars_audit_log" not in sealed.read_bytes()

    code, lines = verify_lines(runner, sealed)
    assert (code, lines) == (
        1,
        ["FAIL  archive     the archive is encrypted: give the key with --identity FILE"],
    )
    other = tmp_path / "other.key"
    runner.invoke(args=["backup", "keygen", "--out", str(other)])
    code, lines = verify_lines(runner, sealed, "--identity", str(other))
    assert code == 1 and lines[0].startswith("FAIL  archive     cannot decrypt the archive")
    code, lines = verify_lines(runner, sealed, "--identity", str(key))
    assert code == 0, lines


def test_encrypting_needs_a_key_and_refuses_a_bad_one(app, runner, tmp_path):
    result = runner.invoke(args=["backup", "create", "--encrypt", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "--encrypt needs --recipient or MARS_BACKUP_RECIPIENTS" in result.output
    result = runner.invoke(
        args=["backup", "create", "--recipient", "age1nope", "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 1
    assert "a recipient is not an age public key" in result.output
    assert not (tmp_path / "y").exists()


def test_a_backup_never_overwrites_a_file(archive, runner):
    before = archive.read_bytes()
    result = runner.invoke(args=["backup", "create", "--out", str(archive)])
    assert result.exit_code == 1
    assert "exists already: give another name" in result.output
    assert archive.read_bytes() == before
    assert not [p for p in archive.parent.iterdir() if p.name.startswith(".mars-backup-")]


def test_restore_refuses_a_database_that_holds_data(archive, db, runner):
    url = db.engine.url.render_as_string(hide_password=False)
    result = runner.invoke(args=["backup", "restore", str(archive), "--into", url])
    assert result.exit_code == 1
    assert "the target holds" in result.output and "--force" in result.output
    other = "sqlite:///x.db" if db.engine.dialect.name == "postgresql" else "postgresql://h/x"
    result = runner.invoke(args=["backup", "restore", str(archive), "--into", other])
    assert result.exit_code == 1
    assert "backup restores into a" in result.output

    db.session.execute(sa.text("DELETE FROM projects"))
    db.session.commit()
    db.session.remove()
    db.engine.dispose()
    result = runner.invoke(args=["backup", "restore", str(archive), "--into", url, "--force"])
    assert result.exit_code == 0, result.output
    db.engine.dispose()
    assert db.session.scalar(sa.text("SELECT count(*) FROM projects")) == 2


# --- scheduled backups, retention, metrics ------------------------------------------------


def backup_gauges(app) -> dict[str, float]:
    response = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        if family.name.startswith("mars_backup_")
    }


def test_scheduled_backups_are_taken_daily_and_kept_by_day_and_week(app, db, run_jobs, tmp_path):
    folder = tmp_path / "backups"
    app.config["MARS"].update(BACKUP_DIR=str(folder), BACKUP_KEEP_DAILY=2, BACKUP_KEEP_WEEKLY=2)
    assert backup_gauges(app) == {
        "mars_backup_last_success_timestamp_seconds": 0.0,
        "mars_backup_last_success_size_bytes": 0.0,
        "mars_backup_failures_since_success": 0.0,
    }
    start = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)  # a Tuesday
    with time_machine.travel(start, tick=False) as traveller:
        run_jobs()
        [first] = folder.iterdir()
        assert first.name == f"mars-backup-20261201T020000Z.tar{SUFFIX[db.engine.dialect.name]}"
        assert folder.stat().st_mode & 0o777 == 0o700 and first.stat().st_mode & 0o777 == 0o600
        gauges = backup_gauges(app)
        assert gauges["mars_backup_last_success_timestamp_seconds"] == start.timestamp()
        assert gauges["mars_backup_last_success_size_bytes"] == first.stat().st_size
        traveller.shift(dt.timedelta(hours=5))
        run_jobs()  # the hourly run: the last backup is 5 hours old, not due
        assert list(folder.iterdir()) == [first]
        killed = folder / ".mars-backup-killed"  # a backup killed while it was made
        killed.mkdir()
        (killed / "database.sqlite").write_text("plaintext")
        os.utime(killed, (start.timestamp(), start.timestamp()))
        for day in range(1, 15):
            traveller.move_to(start + dt.timedelta(days=day))
            run_jobs()
    assert not killed.exists()  # removed by the next backup, a day later
    kept = sorted(name[12:20] for name in kept_names(folder))
    # the newest of the last two days, and of the last two ISO weeks (Dec 7-13 and 14-20)
    assert kept == ["20261213", "20261214", "20261215"]
    records = db.session.scalars(sa.select(BackupRecord)).all()
    assert [record.status for record in records] == ["succeeded"] * 15
    # the drill of docs/recovery.md: the newest backup, restored into a scratch database
    drill = app.test_cli_runner().invoke(args=["backup", "verify", "--latest"])
    assert drill.exit_code == 0, drill.output
    lines = drill.output.splitlines()
    assert lines[0] == f"checking {folder / max(kept_names(folder))}"
    assert [line.split()[0] for line in lines[1:]] == ["ok"] * 6


SUFFIX = {"sqlite": ".gz", "postgresql": ""}


def kept_names(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir()]


def test_the_drill_says_what_is_missing(app, runner, tmp_path):
    result = runner.invoke(args=["backup", "verify", "--latest"])
    assert result.exit_code == 2 and "MARS_BACKUP_DIR, which is not set" in result.output
    app.config["MARS"]["BACKUP_DIR"] = str(tmp_path)
    result = runner.invoke(args=["backup", "verify", "--latest"])
    assert result.exit_code == 1 and f"no backup in {tmp_path}" in result.output
    result = runner.invoke(args=["backup", "verify"])
    assert result.exit_code == 2 and "give ARCHIVE or --latest" in result.output


def test_a_failed_backup_is_recorded_and_counted(app, db, run_jobs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app.config["MARS"]["BACKUP_DIR"] = str(blocker / "backups")
    run_jobs()
    [record] = db.session.scalars(sa.select(BackupRecord)).all()
    assert record.status == "failed" and "Not a directory" in record.error
    assert backup_gauges(app)["mars_backup_failures_since_success"] == 1
    audited = db.session.execute(
        sa.text("SELECT action, target FROM mars_audit_log WHERE action LIKE 'backup.%'")
    ).all()
    assert audited == [("backup.failed", record.id)]
    listed = app.test_cli_runner().invoke(args=["backup", "list"])
    assert "failed" in listed.output and "Not a directory" in listed.output


def test_retention_keeps_the_newest_of_each_day_and_week_and_nothing_else(tmp_path):
    names = [
        "mars-backup-20261130T020000Z.tar.gz",  # Monday of week 49
        "mars-backup-20261206T020000Z.tar.gz",  # Sunday of week 49: its newest
        "mars-backup-20261207T010000Z.tar",  # Monday, week 50
        "mars-backup-20261207T020000Z.tar",  # the same day, newer
        "mars-backup-20261208T020000Z.tar.gz.age",  # Tuesday: the newest
        "mars-backup-manual.tar",  # not a name MARS gives: never touched
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = backup.prune(tmp_path, keep_daily=2, keep_weekly=2)
    assert sorted(path.name for path in removed) == [
        "mars-backup-20261130T020000Z.tar.gz",
        "mars-backup-20261207T010000Z.tar",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "mars-backup-20261206T020000Z.tar.gz",
        "mars-backup-20261207T020000Z.tar",
        "mars-backup-20261208T020000Z.tar.gz.age",
        "mars-backup-manual.tar",
        "notes.txt",
    ]


def test_hook_mars_backup_checks(install_plugins, make_app, tmp_path):
    install_plugins(good="good")
    app = make_app()
    with app.app_context():
        make_user(app)
        path = tmp_path / "with-good.tar"
        manifest = backup.create(path)
        assert manifest["checks"]["good"] == {"active_users": 1}
        runner = app.test_cli_runner()
        code, lines = verify_lines(runner, path)
        assert code == 0 and "ok    good        1 active users" in lines

        def more(document):
            document["checks"]["good"]["active_users"] = 2

        code, lines = verify_lines(runner, rewrite(path, tmp_path / "m.tar", manifest=more))
        assert code == 1 and "FAIL  good        1 active users, not {'active_users': 2}" in lines


@pytest.mark.mars_backend("postgresql")
def test_a_forced_restore_that_fails_changes_nothing(app, archive, db, runner, monkeypatch):
    """The target's emptying and the restore commit together: a failure after the emptying
    (here, a statement made to fail right after it) leaves every table as it was."""
    before = db.session.scalar(sa.text("SELECT count(*) FROM projects"))
    token = make_token(app, make_user(app))
    extra = app.test_client().post(
        PROJECTS, json=project("Extra"), headers={"Authorization": f"Bearer {token}"}
    )
    assert extra.status_code == 201
    db.session.remove()
    monkeypatch.setattr(backup, "_REPLACE_SQL", backup._REPLACE_SQL + "SELECT 1 / 0;\n")
    result = runner.invoke(args=["backup", "restore", str(archive), "--force"])
    assert result.exit_code == 1
    assert "FAIL  restore     the restore was rolled back, nothing changed: " in result.output
    assert "division by zero" in result.output
    db.engine.dispose()
    assert db.session.scalar(sa.text("SELECT count(*) FROM projects")) == before + 1
