"""The architecture rules hold: import-linter contracts built from the tree by
``tools/import_contracts.py``, every plugin in ``plugins/`` included without configuration.

import-linter runs in its own process: it reconfigures logging, which must not leak here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools import import_contracts

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(config: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_import_contracts_hold():
    result = subprocess.run(
        [sys.executable, "tools/import_contracts.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Nine rules, and one per plugin in plugins/.
    kept = 9 + len(import_contracts.plugin_packages())
    assert f"Contracts: {kept} kept, 0 broken." in result.stdout
    assert "other plugins import only mars_projects.api of mars_projects KEPT" in result.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The contracts can fail: one more that forbids what the core does import."""
    config = import_contracts.configuration()
    config += (
        "\n[importlinter:contract:canary]\nname = canary\ntype = forbidden\n"
        "source_modules =\n    mars_server.app\nforbidden_modules =\n    mars_server.db\n"
    )
    (tmp_path / "importlinter.ini").write_text(config)
    result = lint(tmp_path / "importlinter.ini")
    assert result.returncode == 1
    assert "canary BROKEN" in result.stdout


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_new_plugin_is_held_to_the_rules_without_configuration(tmp_path):
    """Two plugins dropped into plugins/: one reaching into the other's models and into the
    core's internals is caught; the other's declared api module is allowed."""
    zoo = tmp_path / "plugins" / "zoo" / "mars_zoo"
    write(zoo / "__init__.py")
    write(zoo / "models.py", "import mars_server.db\n")
    write(zoo / "api.py", "from mars_zoo import models\n")
    bee = tmp_path / "plugins" / "bee" / "mars_bee"
    write(bee / "__init__.py")
    write(bee / "views.py", "from mars_zoo import api\n")
    write(bee / "services.py", "from mars_zoo import models\nimport mars_server.auth.tokens\n")
    config = import_contracts.configuration(tmp_path, apis={"mars_zoo": "mars_zoo.api"})
    assert "root_packages =\n    mars_server\n    mars_sdk\n    mars_bee\n    mars_zoo\n" in config
    (tmp_path / "importlinter.ini").write_text(config)

    result = lint(tmp_path / "importlinter.ini", zoo.parent, bee.parent)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "other plugins import only mars_zoo.api of mars_zoo BROKEN" in result.stdout
    assert "mars_bee.services -> mars_zoo.models" in result.stdout
    assert "mars_bee.views -> mars_zoo.api" not in result.stdout
    assert "plugins import only the public plugin API of mars_server BROKEN" in result.stdout
    assert "the builtin plugin auth is imported by nothing else of MARS BROKEN" in result.stdout
    assert "other plugins import only nothing of mars_bee KEPT" in result.stdout


def test_the_hook_specifications_need_neither_flask_nor_sqlalchemy():
    """A plugin's module can import ``hookimpl`` and the hook specifications without the app:
    the package loads its other names on first use, so no module imports the app through it."""
    code = (
        "import sys\n"
        "import mars_server.hookspecs\n"
        "from mars_server import hookimpl\n"
        "heavy = ('flask', 'sqlalchemy', 'marshmallow', 'flask_smorest', 'mars_server.app')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from mars_server import PluginInfo, create_app\n"
        "print(PluginInfo.__module__, create_app.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == ["[]", "mars_server.plugins mars_server.app"]
