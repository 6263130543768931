"""The plugin system: discovery, checks, disabling, and one test for every hook."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mars_server import create_app, hookspecs
from mars_server.config import ConfigError
from mars_server.ops.cli import cli
from mars_server.plugins import PluginError
from mars_server.testing import settings_for_tests
from tests import fakes

ROOT = Path(__file__).resolve().parents[1]
HOOK_NAMES = sorted(
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("mars_")
)


@pytest.fixture
def good_app(install_plugins, make_app):
    install_plugins(good="good")
    return make_app


# -- one test per hook --------------------------------------------------------------------


def test_hook_mars_api_blueprints(client):
    spec = client.get("/api/v1/openapi.json").json
    assert "/api/v1/projects" in spec["paths"]  # from the projects plugin
    assert "/api/v1/meta/plugins" in spec["paths"]  # from the builtin ops plugin
    assert client.get("/api/v1/projects").status_code == 200


def test_hook_mars_migrations_location(app, db):
    import sqlalchemy as sa

    locations = app.extensions["mars"].migrations_locations
    assert any(loc.endswith("mars_projects/migrations/versions") for loc in locations)
    assert "projects" in sa.inspect(db.engine).get_table_names()


def test_hook_mars_cli_commands(good_app):
    app = good_app(PLUGINS={"good": {"greeting": "bonjour"}})
    result = app.test_cli_runner().invoke(args=["good-hello"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "bonjour"


def test_hook_mars_settings_schema(good_app, monkeypatch):
    monkeypatch.setenv("MARS_GOOD__RETRIES", "7")
    app = good_app()
    assert app.extensions["mars"].plugin_settings["good"] == {"greeting": "hello", "retries": 7}


def test_hook_mars_settings_schema_rejects_bad_values(install_plugins, tmp_path, monkeypatch):
    install_plugins(good="good")
    monkeypatch.setenv("MARS_GOOD__RETRIES", "-1")
    monkeypatch.setenv("MARS_GOOD__COLOUR", "red")
    with pytest.raises(ConfigError) as info:
        create_app(settings_for_tests("sqlite://", tmp_path))
    assert "plugin 'good' setting 'retries'" in str(info.value)
    assert "plugin 'good' setting 'colour'" in str(info.value)


def test_hook_mars_health_checks(good_app, monkeypatch):
    monkeypatch.setitem(fakes.FLAGS, "fail_health", True)
    response = good_app().test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.json["checks"]["good-always-fails"] == "failed"
    assert response.json["checks"]["database"] == "ok"
    assert "secret-ish" not in response.get_data(as_text=True)


def test_hook_mars_app_ready(good_app):
    fakes.ready_calls.clear()
    app = good_app()
    assert fakes.ready_calls == [app]


def test_every_hook_has_its_test():
    sources = "\n".join(p.read_text() for p in ROOT.glob("tests/**/test_*.py"))
    missing = [name for name in HOOK_NAMES if f"def test_hook_{name}" not in sources]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_is_documented_with_its_signature():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in HOOK_NAMES:
        signature = f"def {name}{inspect.signature(getattr(hookspecs, name))}"
        signature = signature.replace("'", "")
        assert signature in docs, f"docs/plugins.md lacks `{signature}`"


def test_hooks_are_called_only_through_the_facade():
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.glob("mars_server/**/*.py")
        if p.name != "plugins.py" and re.search(r"\.hook\.mars_", p.read_text())
    ]
    assert offenders == []


# -- discovery and checks -----------------------------------------------------------------


def test_plugins_are_listed_with_versions_and_states(client):
    body = client.get("/api/v1/meta/plugins").json
    rows = {row["name"]: row for row in body["items"]}
    assert rows["ops"]["source"] == "builtin"
    assert rows["projects"]["source"] == "mars-projects"
    assert rows["projects"]["state"] == "enabled"
    assert rows["projects"]["version"] == "0.1.0"


def test_disabled_plugin_is_listed_but_not_loaded(make_app):
    app = make_app(PLUGINS_DISABLED=["tasks", "projects"])
    client = app.test_client()
    assert client.get("/api/v1/projects").status_code == 404
    rows = {row["name"]: row["state"] for row in client.get("/api/v1/meta/plugins").json["items"]}
    assert rows["projects"] == "disabled"
    result = app.test_cli_runner().invoke(args=["plugins", "list"])
    assert re.search(r"projects\s+0\.1\.0\s+disabled\s+mars-projects", result.output)


def test_builtin_plugin_cannot_be_disabled(tmp_path):
    with pytest.raises(PluginError, match="'ops' is builtin"):
        create_app(settings_for_tests("sqlite://", tmp_path, PLUGINS_DISABLED=["ops"]))


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("incompatible", r"^plugin 'oldie' 0\.0\.1 supports mars_server >=9\.0, this is 0\.1\.0$"),
        ("unknown_hook", r"^plugin 'typo': .*mars_api_blueprint"),
        ("no_info", r"^plugin 'broken': declares no MARS_PLUGIN"),
        ("bad_specifier", r"^plugin 'broken': requires 'version one please' is not a version"),
        ("does_not_exist", r"^plugin 'broken' failed to import: AttributeError"),
    ],
)
def test_bad_plugin_stops_start_up_naming_it(install_plugins, tmp_path, attr, message):
    install_plugins(broken=attr)
    with pytest.raises(PluginError, match=message) as info:
        create_app(settings_for_tests("sqlite://", tmp_path))
    assert "\n" not in str(info.value)


def test_bad_plugin_stops_the_cli_with_one_line(install_plugins, monkeypatch, tmp_path):
    install_plugins(broken="incompatible")
    monkeypatch.setenv("MARS_ENV", "development")
    monkeypatch.setenv("MARS_INSTANCE_PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["db", "current"])  # `plugins list` shows it instead
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: MARS cannot start: plugin 'oldie' 0.0.1 supports mars_server >=9.0, this is 0.1.0"
    ]


def test_plugin_manager_is_built_per_app(make_app):
    first, second = make_app(), make_app(PLUGINS_DISABLED=["tasks", "projects"])
    assert first.extensions["mars"].plugins is not second.extensions["mars"].plugins
    import mars_server.plugins as module

    assert not [v for v in vars(module).values() if type(v).__name__ == "PluginManager"]


def test_disabling_a_broken_plugin_lets_mars_start(install_plugins, make_app):
    install_plugins(broken="does_not_exist")
    app = make_app(PLUGINS_DISABLED=["broken"])
    rows = {
        r["name"]: r["state"] for r in app.test_client().get("/api/v1/meta/plugins").json["items"]
    }
    assert rows["broken"] == "disabled"


def test_a_disabled_plugin_keeps_its_migrations_known(make_app):
    app = make_app(PLUGINS_DISABLED=["tasks", "projects"])
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
