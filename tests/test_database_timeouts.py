"""A request waiting on a stuck PostgreSQL ends in a 503 within MARS's timeouts, never hangs.

(SQLite's busy timeout ending in a 503 is test_problems.py::test_locked_sqlite_database_is_503.)
"""

from __future__ import annotations

import logging
import threading
import time

import flask_migrate
import pytest
import sqlalchemy as sa

from mars_server.db import db as mars_db
from mars_server.ops import migrations

pytestmark = pytest.mark.mars_backend("postgresql")

#: On code without timeouts the blocked request would wait forever: the lock is let go after
#: this long, so such code fails the test (a late 200) instead of hanging the suite.
RELEASE_AFTER_SECONDS = 8


@pytest.mark.parametrize(
    ("timeouts", "cancelled_by"),
    [
        pytest.param({"DATABASE_LOCK_TIMEOUT_MS": 500}, "LockNotAvailable", id="lock-timeout"),
        pytest.param(
            {"DATABASE_STATEMENT_TIMEOUT_MS": 500, "DATABASE_LOCK_TIMEOUT_MS": 0},
            "QueryCanceled",
            id="statement-timeout",
        ),
    ],
)
def test_a_request_behind_a_held_row_lock_ends_in_503(
    client, db, make_app, project_body, caplog, timeouts, cancelled_by
):
    created = client.post("/api/v1/projects", json=project_body(name="Before"))
    assert created.status_code == 201
    url = f"/api/v1/projects/{created.json['id']}"
    # Only the request under test runs with the short timeouts: on a busy machine, setting
    # up (or emptying the tables after) could take longer than they allow.
    timed = make_app(**timeouts).test_client()
    timed.environ_base.update(client.environ_base)  # the same signed-in user
    blocker = db.engine.connect()  # another transaction holds the row
    blocker.execute(
        sa.text("SELECT id FROM projects WHERE id = :id FOR UPDATE"), {"id": created.json["id"]}
    )
    release = threading.Timer(RELEASE_AFTER_SECONDS, blocker.rollback)
    release.start()
    try:
        started = time.monotonic()
        response = timed.patch(
            url, json={"name": "Secret name"}, headers={"If-Match": created.headers["ETag"]}
        )
        waited = time.monotonic() - started
    finally:
        release.cancel()
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert "busy" in response.json["detail"]
    assert waited < 5
    assert client.get(url).json["name"] == "Before"
    [busy] = [r for r in caplog.records if r.name == "mars.errors"]
    assert busy.levelno == logging.WARNING
    # the log names the driver's error, never the statement or its parameters
    assert busy.getMessage() == f"database busy: {cancelled_by}"
    assert not [r for r in caplog.records if "Secret name" in r.getMessage()]


def test_connections_run_under_the_configured_timeouts(app, make_app):
    timed = make_app(DATABASE_STATEMENT_TIMEOUT_MS=1500, DATABASE_LOCK_TIMEOUT_MS=700)
    with timed.app_context(), mars_db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "700ms"
    off = make_app(DATABASE_STATEMENT_TIMEOUT_MS=0, DATABASE_LOCK_TIMEOUT_MS=0)
    with off.app_context(), mars_db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"  # the server's


def test_migrations_are_not_cut_off_by_the_statement_timeout(app, make_app, tmp_path, monkeypatch):
    """``mars db upgrade`` on a big table may run longer than any request may."""
    folder = tmp_path / "versions"
    folder.mkdir()
    (folder / "slow_0001.py").write_text(
        "from alembic import op\n\n"
        'revision = "slow_0001"\n'
        "down_revision = None\n"
        'branch_labels = ("slow",)\n'
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        '    op.execute("SELECT pg_sleep(0.6)")\n\n\n'
        "def downgrade():\n"
        "    pass\n"
    )
    slow = make_app(DATABASE_STATEMENT_TIMEOUT_MS=200)
    state = slow.extensions["mars"]
    monkeypatch.setattr(state, "migrations_locations", [*state.migrations_locations, str(folder)])
    with slow.app_context():
        # a request's statement is cut off
        with pytest.raises(sa.exc.OperationalError), mars_db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(0.6)")
        migrations.upgrade()
        try:
            assert "slow_0001" in migrations.database_heads()
        finally:
            flask_migrate.downgrade(revision="slow@base")
        assert "slow_0001" not in migrations.database_heads()
