"""``mars`` before configuration: the real executable, in a clean environment (PATH without
ruff, HOME, and MARS_ENV=production with no other MARS_* setting)."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mars_server.sdkgen import generated_files
from mars_server.testing import TEST_SECRET_KEY
from tests.test_serving import BIN, clean_env

#: About 25 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(25)

ROOT = Path(__file__).resolve().parents[1]
SDK_PACKAGE = ROOT / "mars_sdk" / "src" / "mars_sdk"
MISSING = "MARS_PUBLIC_URL, MARS_SECRET_KEY, MARS_SMTP_HOST"
DEVELOPMENT = "to run in development instead, set MARS_ENV=development"
THROWAWAY = f"note: no production settings ({MISSING}): running on a throwaway development "
#: Nothing listens there: a command that tried this database would fail.
UNREACHABLE_DATABASE = "postgresql://mars@127.0.0.1:9/mars"


def _path_without_ruff() -> str:
    folders = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(f for f in folders if not (Path(f) / "ruff").exists())


def unconfigured(**extra: str) -> dict[str, str]:
    """PATH (without ruff), HOME, MARS_ENV=production, and ``extra``: nothing else."""
    env = clean_env(**({"MARS_ENV": "production"} | extra))
    kept = {"HOME", "MARS_ENV", *extra}
    return {k: v for k, v in env.items() if k in kept} | {"PATH": _path_without_ruff()}


def mars(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [str(BIN / "mars"), *args],
        env=unconfigured() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def in_parallel(*calls: tuple[list[str], dict[str, str]], cwd: Path | None = None) -> list[Any]:
    """Each ``(args, env)`` run at once: every run is mostly Python starting up."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda call: mars(*call[0], env=call[1], cwd=cwd), calls))


def commands_listed(help_text: str) -> list[str]:
    section = help_text.partition("\nCommands:\n")[2]
    return [line.split()[0] for line in section.splitlines() if line[2:3].isalpha()]


def test_help_lists_every_command_whatever_the_settings(tmp_path):
    results = in_parallel(
        (["--help"], unconfigured()),
        (["--help"], unconfigured(MARS_ENV="development", MARS_INSTANCE_PATH=str(tmp_path))),
        (["--help"], unconfigured(MARS_PAGE_SIZE_DEFAULT="many", MARS_CORS_ORIGINS="*")),
    )
    for result in results:
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    listed = [commands_listed(result.stdout) for result in results]
    assert listed[0] == listed[1] == listed[2]
    core = {"check", "serve", "version", "db", "openapi", "plugins", "sdk", "alembic"}
    areas = {"users", "tokens", "jobs", "worker", "audit", "ratelimit", "projects"}
    assert core | areas <= set(listed[0])


#: Run by the real interpreter in the clean environment: every command's and group's
#: ``--help``, depth first, each invoked afresh (click's runner) in this one process, printed
#: as JSON. One process instead of one per command: each is mostly Python starting up.
HELP_WALK = """
import json, sys
import click
from click.testing import CliRunner
from mars_server.ops.cli import cli

runner = CliRunner()
results = {}

def walk(path):
    result = runner.invoke(cli, [*path, "--help"], prog_name="mars")
    results[" ".join(path)] = [result.exit_code, result.stdout, result.stderr]
    if result.exit_code != 0:
        return
    with click.Context(cli, info_name="mars") as ctx:
        command = cli
        for name in path:
            command = command.get_command(ctx, name)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk([*path, name])

for name in cli.list_commands(click.Context(cli, info_name="mars")):
    walk([name])
json.dump(results, sys.stdout)
"""


def test_help_of_every_command_and_group_without_settings():
    walk = subprocess.run(
        [str(BIN / "python"), "-c", HELP_WALK],
        env=unconfigured(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert walk.returncode == 0, walk.stderr
    results = {tuple(path.split()): result for path, result in json.loads(walk.stdout).items()}
    top = set(commands_listed(mars("--help").stdout))
    assert {path[0] for path in results} == top
    # The commands the issue names, each in a process of its own as well.
    named = [("plugins", "list"), ("openapi", "export"), ("sdk", "generate"), ("db", "revision")]
    named += [("plugin", "new")] if ("plugin", "new") in results else []
    alone = in_parallel(*[([*path, "--help"], unconfigured()) for path in named])
    for path, result in zip(named, alone, strict=True):
        assert (result.returncode, result.stderr) == (0, ""), (path, result.stderr)
        assert result.stdout.splitlines()[0] == results[path][1].splitlines()[0], path
    assert len(top) > 15 and len(results) - len(top) > 30
    for path, (code, stdout, stderr) in results.items():
        assert code == 0, (path, stdout, stderr)
        assert stdout.startswith(f"Usage: mars {' '.join(path)} "), (path, stdout)
        assert stderr == "", (path, stderr)


def test_commands_that_reach_no_production_service_run_without_its_settings(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (sdk / "_client.py").write_text("# the runtime\n")
    listed, exported, generated, no_database = in_parallel(
        (["plugins", "list"], unconfigured(TMPDIR=str(scratch))),
        (["openapi", "export", "-o", "openapi.json"], unconfigured()),
        (["sdk", "generate", "--out", str(sdk)], unconfigured()),
        (["openapi", "export"], unconfigured(MARS_DATABASE_URL=UNREACHABLE_DATABASE)),
        cwd=tmp_path,
    )
    for result in (listed, exported, generated, no_database):
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [f"{THROWAWAY}configuration, with no database"]
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert ["projects", "0.1.0", "enabled"] in rows
    assert list(scratch.iterdir()) == [], "the throwaway instance folder is removed"
    spec = json.loads((tmp_path / "openapi.json").read_text())
    assert spec["openapi"].startswith("3.1") and "/api/v1/projects" in spec["paths"]
    assert json.loads(no_database.stdout) == spec
    # With no ruff on PATH (the generator runs the ruff package MARS installs), the SDK is the
    # committed one, byte for byte.
    made = {p.relative_to(sdk).as_posix(): p.read_text() for p in generated_files(sdk)}
    committed = {
        p.relative_to(SDK_PACKAGE).as_posix(): p.read_text() for p in generated_files(SDK_PACKAGE)
    }
    assert made == committed


SCRATCH_PLUGIN = '''
"""A plugin with one table and no revision yet."""

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server import PluginInfo, hookimpl
from mars_server.db import Model

MARS_PLUGIN = PluginInfo(name="scratch", version="1.0", requires=">=0.1")


class Widget(Model):
    __tablename__ = "scratch_widgets"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "versions")
'''


def test_db_revision_without_settings_compares_with_a_scratch_database(tmp_path):
    site = tmp_path / "site"
    (site / "mars_scratch" / "versions").mkdir(parents=True)
    (site / "mars_scratch" / "__init__.py").write_text(SCRATCH_PLUGIN)
    dist = site / "mars_scratch-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mars-scratch\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mars.plugins]\nscratch = mars_scratch\n")
    env = unconfigured(PYTHONPATH=str(site), MARS_DATABASE_URL=UNREACHABLE_DATABASE)
    result = mars("db", "revision", "--plugin", "scratch", "-m", "widgets", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    note = f"{THROWAWAY}configuration, with a scratch SQLite database, brought to head"
    assert note in result.stderr.splitlines()
    [revision] = (site / "mars_scratch" / "versions").glob("*_widgets.py")
    text = revision.read_text()
    assert "branch_labels = ('scratch',)" in text
    # Compared with a database at head: only the new table, none of the core's.
    assert text.count("op.create_table(") == 1 and "op.create_table('scratch_widgets'" in text


def test_missing_production_settings_are_named_in_one_line_with_the_way_to_development(tmp_path):
    upgrade, serve, create_user, check, cors = in_parallel(
        (["db", "upgrade"], unconfigured()),
        (["serve", "--port", "1"], unconfigured()),
        (["users", "create", "ops@example.test"], unconfigured()),
        (["check"], unconfigured()),
        (["openapi", "export"], unconfigured(MARS_CORS_ORIGINS="*")),
        cwd=tmp_path,
    )
    for result in (upgrade, serve, create_user):
        assert (result.returncode, result.stdout) == (1, "")
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: MARS cannot start: MARS_SECRET_KEY: required in production")
        assert "MARS_PUBLIC_URL: required in production" in line and "MARS_SMTP_HOST" in line
        assert line.endswith(f"; {DEVELOPMENT}")
    assert check.returncode == 1
    *problems, hint = check.stderr.splitlines()
    assert len(problems) == 3 and all(line.startswith("problem: MARS_") for line in problems)
    assert hint == f"hint: production needs these settings; {DEVELOPMENT}"
    # A problem development has too is no reason for a throwaway configuration, nor a hint.
    assert cors.returncode == 1
    assert cors.stderr.splitlines() == [
        "Error: MARS cannot start: MARS_CORS_ORIGINS: list the website's origins; '*' is "
        "refused because MARS answers CORS requests with credentials"
    ]


def test_with_production_settings_these_commands_open_no_database(tmp_path):
    env = unconfigured(
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_PUBLIC_URL="https://mars.example.org",
        MARS_SMTP_HOST="smtp.example.org",
        MARS_DATABASE_URL=UNREACHABLE_DATABASE,
        MARS_INSTANCE_PATH=str(tmp_path / "instance"),
        MARS_LOG_LEVEL="ERROR",
    )
    listed, exported = in_parallel((["plugins", "list"], env), (["openapi", "export"], env))
    for result in (listed, exported):
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert json.loads(exported.stdout)["openapi"].startswith("3.1")
