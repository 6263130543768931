"""A plugin uninstalled, broken or disabled never breaks ``mars``; ``mars plugins purge``;
hook mistakes are named at start-up.

The ``gadgets`` fake (tests/fakes.py) has its own migration branch: a test installs it,
upgrades, then builds an app without it, as ``pip uninstall`` would leave things.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mars_server import create_app
from mars_server.config import normalise_database_url
from mars_server.ops import migrations
from mars_server.ops.cli import cli
from mars_server.plugins import PluginError
from mars_server.testing import TEST_SECRET_KEY, settings_for_tests, signed_in_client
from tests import fakes

ROOT = Path(__file__).resolve().parents[1]
GONE = (
    "plugin 'gadgets' is not installed but its migrations are applied (gadgets_0002): "
    "reinstall it, or run `mars plugins purge gadgets`"
)
#: Revisions the tests write into the shared database; the ``gadgets`` fixture removes them.
JUNK_REVISIONS = ("0a1b2c3d4e5f",)
RENAME_HEAD = sa.text("UPDATE alembic_version SET version_num = :new WHERE version_num = :old")


@pytest.fixture
def gadgets(migrated_database, install_plugins, tmp_path):
    """The ``gadgets`` plugin installed, its revisions in this test's folder. Request it
    before ``make_app``: afterwards it rids the shared database of what the test left."""
    fakes.gadgets.write_revisions(tmp_path / "gadgets_versions")
    install_plugins(gadgets="gadgets")
    yield fakes.gadgets
    fakes.gadgets.versions = None
    engine = sa.create_engine(normalise_database_url(migrated_database))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num LIKE 'gadgets%'"))
            for revision in JUNK_REVISIONS:
                conn.execute(
                    sa.text("DELETE FROM alembic_version WHERE version_num = :r"), {"r": revision}
                )
            for table in ("gadget_parts", "gadgets"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        engine.dispose()


@pytest.fixture
def mars(migrated_database, tmp_path, monkeypatch):
    """Run the ``mars`` command as an operator would, on the test database."""
    env = {
        "MARS_ENV": "testing",
        "MARS_SECRET_KEY": TEST_SECRET_KEY,
        "MARS_DATABASE_URL": migrated_database,
        "MARS_INSTANCE_PATH": str(tmp_path / "cli-instance"),
        "MARS_LOG_LEVEL": "ERROR",
    }

    def run(*args: str, input: str | None = None):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(cli, list(args), input=input)

    return run


def tables(app) -> set[str]:
    from mars_server.db import db

    with app.app_context(), db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def heads(app) -> set[str]:
    with app.app_context():
        return migrations.database_heads()


def upgraded_then_uninstalled(make_app, install_plugins):
    """Upgrade with gadgets installed, then ``pip uninstall`` it: the app without it."""
    with_it = make_app()
    result = with_it.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert {"gadgets", "gadget_parts"} <= tables(with_it)
    install_plugins()  # the code is gone
    return make_app()


def rows(app, sql: str, **params) -> list:
    from mars_server.db import db

    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


# -- 1. an uninstalled plugin with applied migrations: one line, everywhere ---------------


def test_every_command_names_the_uninstalled_plugin_and_the_ways_out(
    gadgets, make_app, install_plugins, mars
):
    app = upgraded_then_uninstalled(make_app, install_plugins)
    runner = app.test_cli_runner()
    for args in (
        ["db", "upgrade"],
        ["db", "downgrade", "gadgets@base"],
        ["db", "current"],
        ["db", "heads"],
        ["db", "check"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.splitlines() == [f"Error: {GONE}"], args
    result = mars("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("problem:")] == [
        f"problem: {GONE}"
    ]
    # `mars serve` upgrades a SQLite database first, and checks a PostgreSQL one: both stop.
    result = mars("serve", "--port", "1")
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: {GONE}"]


def test_readyz_names_the_uninstalled_plugin(gadgets, make_app, install_plugins):
    app = upgraded_then_uninstalled(make_app, install_plugins)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["migrations"] == f"failed: {GONE}"
    assert response.json["checks"]["database"] == "ok"


@pytest.mark.parametrize("command", [["worker"], ["relay"]])
def test_the_worker_and_the_relay_name_the_uninstalled_plugin(
    gadgets, make_app, install_plugins, migrated_database, tmp_path, command
):
    upgraded_then_uninstalled(make_app, install_plugins)
    # Its own process, as an operator starts it: a worker that started anyway would run on.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MARS_")}
    env |= {
        "MARS_ENV": "testing",
        "MARS_SECRET_KEY": TEST_SECRET_KEY,
        "MARS_DATABASE_URL": migrated_database,
        "MARS_INSTANCE_PATH": str(tmp_path / "worker-instance"),
        "MARS_LOG_LEVEL": "ERROR",
        "MARS_JOBS_BACKEND": "celery" if command == ["relay"] else "embedded",
        "MARS_CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: it stops before
    }
    worker = subprocess.run(
        [sys.executable, "-c", "from mars_server.ops.cli import main; main()", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 1, worker.stdout + worker.stderr
    assert worker.stderr.splitlines() == [f"Error: {GONE}"]


def test_a_revision_that_names_no_plugin_is_reported_as_unknown(gadgets, make_app, mars):
    app = make_app()
    with app.app_context():
        from mars_server.db import db

        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0a1b2c3d4e5f')"))
    result = mars("check")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "problem: database revision '0a1b2c3d4e5f' is unknown: no installed code has it and it "
        "names no plugin (revision ids are <plugin>_<NNNN>)"
    ]
    assert app.test_client().get("/readyz").status_code == 503


def test_a_newer_release_of_the_core_or_an_installed_plugin_is_still_a_rolling_deploy(
    make_app,
):
    from mars_server.db import db

    app = make_app()
    with app.app_context():
        real = {h.rsplit("_", 1)[0]: h for h in migrations.database_heads()}
        newer = {branch: f"{branch}_9999" for branch in ("auth", "projects")}
        try:
            with db.engine.begin() as conn:
                for branch, revision in newer.items():
                    conn.execute(RENAME_HEAD, {"old": real[branch], "new": revision})
            assert migrations.revision_problems() == []
            assert not migrations.pending()
            assert app.test_client().get("/readyz").status_code == 200
        finally:
            with db.engine.begin() as conn:
                for branch, revision in newer.items():
                    conn.execute(RENAME_HEAD, {"old": revision, "new": real[branch]})


# -- 2. mars plugins purge ----------------------------------------------------------------


def subscribe(client, *events: str) -> str:
    response = client.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/mars", "events": list(events)}
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def prefer(client, event_type: str) -> None:
    response = client.put(
        f"/api/v1/me/notification-preferences/{event_type}", json={"in_app": False, "email": True}
    )
    assert response.status_code == 200, response.json


def test_purge_while_installed_downgrades_it_and_removes_its_event_types(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = signed_in_client(app)
    only_gadgets = subscribe(client, "gadgets.made", "gizmo.spun")
    mixed = subscribe(client, "gizmo.spun", "project.created")
    etag = client.get(f"/api/v1/webhooks/{mixed}").headers["ETag"]
    prefer(client, "gizmo.spun")
    prefer(client, "project.created")
    audited_before = {id_ for (id_,) in rows(app, "SELECT id FROM mars_audit_log")}
    assert audited_before

    result = app.test_cli_runner().invoke(args=["plugins", "purge", "gadgets"], input="y\n")
    assert result.exit_code == 0, result.output
    # What the webhooks and notifications plugins keep of it, from the mars_plugin_purged hook:
    subscriptions = (
        "webhook subscriptions to gadgets.made, gizmo.spun "
        f"(endpoints that keep other event types: {mixed})"
    )
    emptied = f"webhook endpoints left with no event type, with their delivery logs: {only_gadgets}"
    preferences = "1 notification preference for gizmo.spun"
    lines = result.output.splitlines()
    assert lines[:5] == [  # the question asked
        "Purge plugin 'gadgets':",
        "  downgrade gadgets_0002 to base, dropping its tables and their data",
        f"  notifications: remove {preferences}",
        f"  webhooks: remove {subscriptions}",
        f"  webhooks: remove {emptied}",
    ]
    assert "downgraded gadgets to base from gadgets_0002: its tables are dropped" in lines
    assert f"webhooks: removed {subscriptions}" in lines
    assert f"webhooks: removed {emptied}" in lines
    assert f"notifications: removed {preferences}" in lines
    assert not any(line.startswith("not purged by") for line in lines)
    assert not {"gadgets", "gadget_parts"} & tables(app)
    assert not any(h.startswith("gadgets_") for h in heads(app))
    assert client.get(f"/api/v1/webhooks/{only_gadgets}").status_code == 404
    kept = client.get(f"/api/v1/webhooks/{mixed}")
    assert kept.json["events"] == ["project.created"]
    assert kept.headers["ETag"] != etag
    assert rows(app, "SELECT event_type FROM notification_preferences") == [("project.created",)]
    audited = rows(app, "SELECT id, action, target, actor_id, details FROM mars_audit_log")
    assert audited_before < {row[0] for row in audited}  # the log is kept, and one entry added
    [purged] = [row for row in audited if row[1] == "plugins.purged"]
    assert purged[2] == "gadgets" and purged[3].startswith("cli:")
    details = purged[4] if isinstance(purged[4], dict) else json.loads(purged[4])
    assert details["removed"] == {
        "notifications": [preferences],
        "webhooks": [subscriptions, emptied],
    }
    assert details["revisions"] == ["gadgets_0002"]
    assert details["not_purged_by"] == []


def test_purge_asks_first(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = signed_in_client(app)
    endpoint = subscribe(client, "gadgets.made")
    prefer(client, "gadgets.made")
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "gadgets"], input="n\n")
    assert result.exit_code == 1
    assert "Aborted" in result.output
    # Asked what would go (the hook's dry run), which is all still there.
    assert "  notifications: remove 1 notification preference for gadgets.made" in result.output
    assert (
        "  webhooks: remove webhook endpoints left with no event type, with their delivery "
        f"logs: {endpoint}" in result.output
    )
    assert {"gadgets", "gadget_parts"} <= tables(app)
    assert "gadgets_0002" in heads(app)
    assert rows(app, "SELECT endpoint_id FROM webhook_subscriptions") == [(endpoint,)]
    assert rows(app, "SELECT event_type FROM notification_preferences") == [("gadgets.made",)]
    assert rows(app, "SELECT id FROM mars_audit_log WHERE action = 'plugins.purged'") == []


def test_purge_of_a_disabled_plugin_uses_its_migrations(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    disabled = make_app(PLUGINS_DISABLED=["gadgets"])
    result = disabled.test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 0, result.output
    assert "downgraded gadgets to base" in result.output
    assert not {"gadgets", "gadget_parts"} & tables(app)


def test_purge_after_the_code_is_gone_leaves_mars_clean(gadgets, make_app, install_plugins, mars):
    with_it = make_app()
    assert with_it.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = signed_in_client(with_it)
    endpoint = subscribe(client, "gadgets.made", "gizmo.spun", "project.created")
    prefer(client, "gadgets.made")
    install_plugins()  # pip uninstall

    result = mars("plugins", "purge", "gadgets", "--yes")
    assert result.exit_code == 0, result.output
    assert "forgot its revisions in alembic_version: gadgets_0002" in result.output
    assert "webhooks: removed webhook subscriptions to gadgets.made (endpoints that keep " in (
        result.output
    )
    assert "notifications: removed 1 notification preference for gadgets.made\n" in result.output
    # Without its code, only `gadgets.*` is known to be its own.
    assert client.get(f"/api/v1/webhooks/{endpoint}").json["events"] == [
        "gizmo.spun",
        "project.created",
    ]
    assert rows(with_it, "SELECT event_type FROM notification_preferences") == []
    assert re.search(
        r"tables that no installed code declares remain.*gadget_parts, gadgets", result.output
    )
    assert "DROP TABLE" in result.output
    assert {"gadgets", "gadget_parts"} <= tables(with_it)  # MARS drops nothing it cannot know
    purged = "SELECT target FROM mars_audit_log WHERE action = 'plugins.purged'"
    assert rows(with_it, purged) == [("gadgets",)]

    assert mars("db", "upgrade").exit_code == 0
    result = mars("check")
    assert result.exit_code == 0, result.output
    assert "are fine" in result.output
    assert make_app().test_client().get("/readyz").status_code == 200


def test_purge_that_cannot_downgrade_removes_nothing(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    endpoint = subscribe(signed_in_client(app), "gadgets.made")
    from mars_server.db import db

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE gadget_parts"))  # its downgrade will fail
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("Error: cannot downgrade gadgets to base, nothing else was removed: "), (
        line
    )
    assert "gadgets_0002" in heads(app)
    assert rows(app, "SELECT endpoint_id FROM webhook_subscriptions") == [(endpoint,)]


def test_purge_while_installed_first_needs_every_revision_known(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    from mars_server.db import db

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0a1b2c3d4e5f')"))
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: database revision '0a1b2c3d4e5f' is unknown")
    assert {"gadgets", "gadget_parts"} <= tables(app)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("webhooks", "Error: plugin 'webhooks' is builtin: it cannot be purged"),
        ("core", "Error: plugin 'core' is builtin: it cannot be purged"),
        (
            "nothing",
            "Error: no plugin 'nothing' is installed, and the database holds nothing of it",
        ),
    ],
)
def test_purge_refuses_a_builtin_and_an_unknown_name(make_app, name, message):
    result = make_app().test_cli_runner().invoke(args=["plugins", "purge", name, "--yes"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [message]


def test_purge_of_an_unknown_name_says_which_disabled_plugins_were_not_asked(make_app):
    app = make_app(PLUGINS_DISABLED=["notifications"])
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "nothing", "--yes"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: no plugin 'nothing' is installed, and the database holds nothing of it that "
        "the enabled plugins know of (notifications: disabled)"
    ]


def test_purge_refuses_a_plugin_that_cannot_load(install_plugins, make_app):
    install_plugins(oldie="incompatible")
    app = make_app(PLUGINS_DISABLED=["oldie"])  # disabled: how an operator gets past it
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "oldie", "--yes"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: plugin 'oldie' is installed but cannot load (")
    assert "uninstall it and purge it then" in result.output


@pytest.fixture
def keeper():
    """The ``keeper`` fake: a plugin that keeps something of others, asked at every purge."""
    fakes.keeper.calls.clear()
    fakes.keeper.fail = False
    yield fakes.keeper
    fakes.keeper.calls.clear()
    fakes.keeper.fail = False


def purge_entry(app) -> dict:
    [(details,)] = rows(app, "SELECT details FROM mars_audit_log WHERE action = 'plugins.purged'")
    return details if isinstance(details, dict) else json.loads(details)


def test_hook_mars_plugin_purged(gadgets, keeper, install_plugins, make_app):
    install_plugins(gadgets="gadgets", keeper="keeper")
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "gadgets"], input="y\n")
    assert result.exit_code == 0, result.output
    declared = ["gadgets.made", "gizmo.spun"]
    # Asked what would go (for the question), then to remove it; never told to commit.
    assert keeper.calls == [("gadgets", declared, True), ("gadgets", declared, False)]
    assert "  keeper: remove its notes on gadgets\n" in result.output
    assert "keeper: removed its notes on gadgets\n" in result.output
    assert purge_entry(app)["removed"] == {"keeper": ["its notes on gadgets"]}

    # The purged plugin is not asked about itself.
    keeper.calls.clear()
    result = app.test_cli_runner().invoke(args=["plugins", "purge", "keeper", "--yes"])
    assert result.exit_code == 0, result.output
    assert keeper.calls == []
    assert "no enabled plugin kept anything of its event types\n" in result.output


def test_purge_without_the_code_asks_about_its_name_only(
    gadgets, keeper, install_plugins, make_app
):
    install_plugins(gadgets="gadgets", keeper="keeper")
    assert make_app().test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    install_plugins(keeper="keeper")  # pip uninstall gadgets
    result = make_app().test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 0, result.output
    assert keeper.calls == [("gadgets", [], False)]  # --yes: no question, so no dry run


def test_a_disabled_builtin_is_not_asked_and_keeps_its_rows(gadgets, make_app):
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = signed_in_client(app)
    endpoint = subscribe(client, "gadgets.made", "project.created")
    prefer(client, "gadgets.made")
    without = make_app(PLUGINS_DISABLED=["notifications"])
    result = without.test_cli_runner().invoke(args=["plugins", "purge", "gadgets"], input="y\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  not asked, as they are disabled: notifications" in lines
    assert (
        "not purged by notifications: disabled, so not asked; what they keep of 'gadgets' stays "
        "until they are enabled and `mars plugins purge gadgets` runs again"
    ) in lines
    assert not any(line.startswith("notifications: removed") for line in lines)
    assert client.get(f"/api/v1/webhooks/{endpoint}").json["events"] == ["project.created"]
    assert rows(app, "SELECT event_type FROM notification_preferences") == [("gadgets.made",)]
    assert purge_entry(app)["not_purged_by"] == ["notifications"]

    # Enabled again, the purge run again removes the rest (gadgets is at base by now).
    result = make_app().test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 0, result.output
    assert "notifications: removed 1 notification preference for gadgets.made\n" in (result.output)
    assert "not purged by" not in result.output
    assert rows(app, "SELECT event_type FROM notification_preferences") == []


def test_a_plugin_that_fails_to_purge_leaves_everything_as_it_was(
    gadgets, keeper, install_plugins, make_app
):
    install_plugins(gadgets="gadgets", keeper="keeper")
    app = make_app()
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    endpoint = subscribe(signed_in_client(app), "gadgets.made")
    install_plugins(keeper="keeper")  # pip uninstall gadgets
    keeper.fail = True
    # The builtins are asked first: the webhooks plugin has deleted the subscription, in the
    # transaction that the keeper's failure rolls back.
    result = make_app().test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: plugin 'keeper' failed to remove what it keeps of 'gadgets': RuntimeError: its "
        "store is read-only; nothing else was removed: run `mars plugins purge gadgets` again "
        "once that is fixed"
    ]
    assert rows(app, "SELECT endpoint_id FROM webhook_subscriptions") == [(endpoint,)]
    assert "gadgets_0002" in heads(app)
    assert rows(app, "SELECT id FROM mars_audit_log WHERE action = 'plugins.purged'") == []

    keeper.fail = False
    result = make_app().test_cli_runner().invoke(args=["plugins", "purge", "gadgets", "--yes"])
    assert result.exit_code == 0, result.output
    assert rows(app, "SELECT endpoint_id FROM webhook_subscriptions") == []


# -- 3. broken and disabled plugins are shown, not fatal ----------------------------------


def test_list_and_check_show_broken_plugins(install_plugins, mars):
    install_plugins(oldie="incompatible", gone="does_not_exist", typo="unknown_hook")
    result = mars("plugins", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        re.match(r"oldie\s+0\.0\.1\s+broken: plugin 'oldie' 0\.0\.1 supports mars_server", line)
        for line in lines
    ), result.output
    assert any(
        re.match(r"gone\s+unknown\s+broken: plugin 'gone' failed to import", x) for x in lines
    )
    assert any(
        re.match(r"typo\s+1\.0\s+broken: .*did you mean mars_api_blueprints\?", x) for x in lines
    )
    assert any(re.match(r"projects\s+0\.1\.0\s+enabled", line) for line in lines)

    result = mars("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 3, result.output
    assert "problem: plugin 'oldie' 0.0.1 supports mars_server >=9.0, this is 0.1.0" in problems

    result = mars("serve", "--port", "1")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: MARS cannot start: plugin 'gone' failed to import: AttributeError: "
        "module 'tests.fakes' has no attribute 'does_not_exist'"
    ]


def test_check_notes_a_disabled_plugin_and_passes(install_plugins, mars, monkeypatch):
    install_plugins(gone="does_not_exist")
    monkeypatch.setenv("MARS_PLUGINS_DISABLED", "gone,tasks,projects")
    result = mars("check")
    assert result.exit_code == 0, result.output
    assert "note: plugin 'gone' is disabled: it cannot load (plugin 'gone' failed to import" in (
        result.output
    )
    assert "note: plugin 'projects' is disabled\n" in result.output
    listed = mars("plugins", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"state": "disabled"' in listed.output
    assert '"problem": "plugin \'gone\' failed to import' in listed.output


# -- 4. hook mistakes ---------------------------------------------------------------------


def test_a_hookimpl_that_is_no_hook_says_which_one_was_meant(install_plugins, tmp_path):
    install_plugins(typo="unknown_hook")
    with pytest.raises(PluginError) as info:
        create_app(settings_for_tests("sqlite://", tmp_path))
    assert str(info.value) == (
        "plugin 'typo': tests.fakes.UnknownHook.mars_api_blueprint is marked @hookimpl but is "
        "no MARS hook; did you mean mars_api_blueprints?"
    )


def test_hook_named_functions_without_hookimpl_are_warned_about(
    install_plugins, tmp_path, caplog, mars
):
    install_plugins(unmarked="unmarked", sloppy="sloppy_module")
    with caplog.at_level(logging.WARNING, logger="mars_server.plugins"):
        app = create_app(settings_for_tests("sqlite://", tmp_path))
    expected = [
        "plugin 'sloppy': sloppy_plugin defines mars_event_types without @hookimpl: never "
        "called (mark them @hookimpl, or rename them)",
        "plugin 'unmarked': tests.fakes.Unmarked defines mars_lost_helper, mars_scopes without "
        "@hookimpl: never called (mark them @hookimpl, or rename them)",
    ]
    assert sorted(app.extensions["mars"].plugins.warnings) == expected
    assert sorted(r.getMessage() for r in caplog.records if "@hookimpl" in r.getMessage()) == (
        expected
    )
    # the marked one is a hook; the imported mars_* function is not the module's own
    assert "sloppy" in {p.info.name for p in app.extensions["mars"].plugins.loaded}
    result = mars("check")
    assert f"warning: {expected[0]}" in result.output
