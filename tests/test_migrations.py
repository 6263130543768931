"""Migrations: every branch upgrades an empty database to models exactly; down and up again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mars_server.db import db as mars_db
from mars_server.ops import migrations
from mars_server.search import is_search_index


def include_object(obj, name, type_, reflected, compare_to):
    """What the migrations' environment compares (mars_server/migrations/env.py)."""
    return not is_search_index(name, type_)


def autogenerate_diff(engine):
    with engine.connect() as connection:
        opts = {"compare_type": True, "include_object": include_object}
        context = MigrationContext.configure(connection, opts=opts)
        return compare_metadata(context, mars_db.metadata)


def test_models_and_migrations_agree(app, db):
    """The session database was built by the real migrations from empty."""
    assert autogenerate_diff(db.engine) == []
    assert not migrations.pending()
    heads = migrations.script_heads()
    branches = {head.rsplit("_", 1)[0] for head in heads}
    assert len(branches) == len(heads)  # one head per branch: no branch forked
    assert {"core", "auth", "projects"} <= branches
    assert "core_0004" in heads


def test_each_branch_goes_down_and_up_again(app, db):
    import flask_migrate

    flask_migrate.downgrade(revision="projects@base")
    try:
        assert "projects" not in sa.inspect(db.engine).get_table_names()
        assert "mars_idempotency_keys" in sa.inspect(db.engine).get_table_names()
        assert migrations.pending()
    finally:
        migrations.upgrade()
    assert autogenerate_diff(db.engine) == []


def test_readyz_reports_a_database_behind_head(sqlite_app, tmp_path):
    from mars_server import create_app
    from mars_server.testing import settings_for_tests

    app = create_app(settings_for_tests(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path))
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["migrations"] == "failed"
    assert client.get("/healthz").status_code == 200
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "projects_0003" in result.output
    assert client.get("/readyz").status_code == 200


def test_readyz_is_ready_on_a_database_a_newer_release_migrated(tmp_path):
    """A rolling deploy: the new release's expand migrations ran, the old instances serve on."""
    from mars_server import create_app
    from mars_server.testing import settings_for_tests

    app = create_app(settings_for_tests(f"sqlite:///{tmp_path / 'ahead.db'}", tmp_path))
    client = app.test_client()
    with app.app_context():
        migrations.upgrade()
        core_head = next(h for h in migrations.script_heads() if h.startswith("core_"))
        with mars_db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE alembic_version SET version_num = 'core_9999' WHERE version_num = :h"
                ),
                {"h": core_head},
            )
        assert not migrations.pending()
    assert client.get("/readyz").status_code == 200
    with app.app_context(), mars_db.engine.begin() as conn:
        # One branch ahead does not hide another one behind.
        projects_head = next(h for h in migrations.script_heads() if h.startswith("projects_"))
        conn.execute(
            sa.text("DELETE FROM alembic_version WHERE version_num = :h"), {"h": projects_head}
        )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["migrations"] == "failed"


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_app):
    app = sqlite_app(SQLITE_BUSY_TIMEOUT_MS=1234)
    with app.app_context(), mars_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234


@pytest.mark.parametrize("command", [["db", "heads"], ["db", "current"]])
def test_db_commands_list_every_branch(runner, command):
    result = runner.invoke(args=command)
    assert result.exit_code == 0, result.output
    assert set(result.output.split()) >= {"auth_0007", "audit_0002", "projects_0003"}


def test_db_check_agrees(runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


def test_db_revision_starts_a_new_plugin_branch(app, runner, tmp_path, monkeypatch):
    """A plugin without revisions yet gets its first one, labelled and depending on core."""
    folder = tmp_path / "versions"
    folder.mkdir()
    plugins = app.extensions["mars"].plugins
    real = plugins.migrations_by_plugin
    monkeypatch.setattr(plugins, "migrations_by_plugin", lambda: real() | {"newbie": str(folder)})
    monkeypatch.setattr(
        app.extensions["mars"],
        "migrations_locations",
        [*app.extensions["mars"].migrations_locations, str(folder)],
    )
    result = runner.invoke(args=["db", "revision", "--plugin", "newbie", "-m", "first", "--empty"])
    assert result.exit_code == 0, result.output
    (script,) = folder.glob("*.py")
    text = script.read_text()
    assert "branch_labels = ('newbie',)" in text
    assert "depends_on = 'core_0004'" in text  # the core's head
    assert "down_revision = None" in text
