"""``mars plugin new``: the plugin it writes installs, migrates, serves, tests green, joins the
SDK, and leaves again cleanly, as a feature team would use it.

The end-to-end test installs the new plugin into a virtual environment of its own that sees
this one's packages (a ``.pth`` file), so the suite's own environment never has it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mars_server.ops.cli import cli
from mars_server.scaffold import ScaffoldError, plugin_names
from tests.mailbox import free_port

#: About 30 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(30)

ROOT = Path(__file__).resolve().parents[1]
SDK_PACKAGE = ROOT / "mars_sdk" / "src" / "mars_sdk"
MARS = "from mars_server.ops.cli import main; main()"


def test_names_derive_from_the_plugin_name():
    names = plugin_names("chores", today=dt.date(2026, 12, 7))
    assert (names.package, names.distribution, names.resource, names.model) == (
        "mars_chores",
        "mars-chores",
        "chore",
        "Chore",
    )
    assert (names.table, names.id_prefix, names.migration) == (
        "chores",
        "chr",
        "20261207_chores_0001_create_chores",
    )
    assert names.core_head == "core_0004" and names.core_requires == ">=0.1,<0.2"
    stories = plugin_names("user_stories", today=dt.date(2026, 12, 7))
    assert (stories.resource, stories.model, stories.table) == (
        "user_story",
        "UserStory",
        "user_storys",
    )
    inventory = plugin_names("inventory", resource="part")
    assert (inventory.resource, inventory.table, inventory.id_prefix) == ("part", "parts", "prt")
    assert plugin_names("stock").resource == "stock_item"


@pytest.mark.parametrize(
    ("name", "resource", "message"),
    [
        ("Tasks", None, "'Tasks' is not a plugin name"),
        ("t", None, "'t' is not a plugin name"),
        ("class", None, "'class' is not a plugin name"),
        ("oauth", None, "'oauth' is a name MARS uses itself"),
        ("projects", None, "a plugin named 'projects' is installed already"),
        ("webhooks", None, "a plugin named 'webhooks' is installed already"),
        ("chores", "a-chore", "'a-chore' is not a resource name"),
    ],
)
def test_bad_names_are_refused(name, resource, message):
    with pytest.raises(ScaffoldError) as refused:
        plugin_names(name, resource)
    assert str(refused.value).startswith(message)


def test_the_command_refuses_a_folder_in_use_and_writes_nothing(tmp_path):
    used = tmp_path / "chores"
    used.mkdir()
    (used / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["plugin", "new", "chores", "--path", str(used)])
    assert result.exit_code == 1
    assert result.output == f"Error: {used} exists and is not empty\n"
    assert [p.name for p in used.iterdir()] == ["mine.txt"]
    bad = CliRunner().invoke(cli, ["plugin", "new", "My Plugin", "--path", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "is not a plugin name" in bad.output
    assert not (tmp_path / "x").exists()


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout=300):
    result = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def venv(tmp_path) -> Path:
    """A virtual environment that sees this one's packages and installs into its own."""
    folder = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(folder))
    python = folder / "bin" / "python"
    own = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    parent = sysconfig.get_paths()["purelib"]
    Path(own.stdout.strip(), "mars-parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n"
    )
    return python


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def rows(listing: str) -> list[list[str]]:
    return [line.split() for line in listing.splitlines()]


@pytest.mark.mars_backend("sqlite")
def test_a_new_plugin_installs_migrates_serves_passes_its_tests_and_joins_the_sdk(
    tmp_path, venv, database_url
):
    # database_url only picks the backend: the plugin gets a database of its own.
    folder = tmp_path / "plugins" / "chores"
    wrote = run(sys.executable, "-c", MARS, "plugin", "new", "chores", cwd=tmp_path).stdout
    assert wrote.startswith("wrote the plugin 'chores' (mars-chores), 14 files, to plugins/chores")
    pyproject, setup_cfg = str(ROOT / "pyproject.toml"), str(ROOT / "setup.cfg")
    run(sys.executable, "-m", "ruff", "check", "--config", pyproject, str(folder))
    run(sys.executable, "-m", "ruff", "format", "--check", "--config", pyproject, str(folder))
    run(sys.executable, "-m", "mypy", "--config-file", setup_cfg, str(folder / "mars_chores"))

    pip = (str(venv), "-m", "pip")
    install = ("install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e")
    run(*pip, *install, str(folder))
    # As a feature team's shell would be: no MARS settings, and pytest finding its plugins
    # itself (tox names MARS's own: PYTEST_DISABLE_PLUGIN_AUTOLOAD).
    outside = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MARS_", "PYTEST_XDIST", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"))
    }
    env = outside | {
        "MARS_ENV": "development",
        "MARS_INSTANCE_PATH": str(tmp_path / "instance"),
        "MARS_DATABASE_URL": f"sqlite:///{tmp_path / 'mars.db'}",
        "MARS_LOG_LEVEL": "WARNING",
    }
    mars = (str(venv), "-c", MARS)
    assert "chores_0001" in run(*mars, "db", "upgrade", env=env).stdout
    assert "No new upgrade operations detected." in run(*mars, "db", "check", env=env).stdout
    listed = run(*mars, "plugins", "list", env=env).stdout
    assert ["chores", "0.1.0", "enabled", "mars-chores"] in rows(listed)

    # Served: its operations are in the document /api/docs renders.
    port = free_port()
    command = [*mars, "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                get(f"{base}/readyz")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        status, page = get(f"{base}/api/docs")
        assert status == 200 and "openapi.json" in page
        spec = json.loads(get(f"{base}/api/v1/openapi.json")[1])
    finally:
        server.terminate()
        server.wait(10)
    assert set(spec["paths"]["/api/v1/chores"]) == {"get", "post"}
    assert set(spec["paths"]["/api/v1/chores/{chore_id}"]) >= {"get", "patch", "delete"}
    assert {"chore.created", "chore.updated", "chore.deleted"} <= set(spec["webhooks"])

    # Its own tests, on MARS's fixtures, pass.
    tests = (str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--mars-db=sqlite")
    assert "8 passed" in run(*tests, str(folder / "tests"), env=outside, cwd=folder).stdout

    # The SDK generated with it has its resource and its events.
    sdk = tmp_path / "mars_sdk"
    shutil.copytree(SDK_PACKAGE, sdk)
    run(*mars, "sdk", "generate", "--out", str(sdk), env=env)
    resource = (sdk / "resources" / "chores.py").read_text()
    # client.chores.list(), .create(...), .get(chore_id), .update(chore_id, ...), .delete(...)
    for method in ("list(", "create(", "get(", "update(", "delete("):
        assert f"    def {method}" in resource
    assert "def get(\n        self,\n        chore_id: str,\n" in resource
    assert '"chore.created": WebhookChoreCreated.from_json' in (sdk / "events.py").read_text()

    # Disabled, it stays listed; purged, its table goes; uninstalled, MARS is clean; installed
    # again, it comes back with an empty table.
    disabled = run(*mars, "plugins", "list", env=env | {"MARS_PLUGINS_DISABLED": "chores"})
    assert ["chores", "0.1.0", "disabled", "mars-chores"] in rows(disabled.stdout)
    purged = run(*mars, "plugins", "purge", "chores", "--yes", env=env).stdout
    assert "downgraded chores to base from chores_0001: its tables are dropped" in purged
    run(*pip, "uninstall", "-q", "-y", "mars-chores")
    assert "chores" not in run(*mars, "plugins", "list", env=env).stdout
    run(*mars, "check", env=env)
    run(*pip, *install, str(folder))
    assert "chores_0001" in run(*mars, "db", "upgrade", env=env).stdout
    run(*mars, "db", "check", env=env)
