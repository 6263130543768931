"""The architecture rules of setup.cfg's import-linter contracts hold.

import-linter runs in its own process: it reconfigures logging, which must not leak here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_hold():
    result = lint(ROOT / "setup.cfg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The contracts can fail: a copy of the config that forbids what the core does import."""
    config = (ROOT / "setup.cfg").read_text()
    config += (
        "\n[importlinter:contract:canary]\nname = canary\ntype = forbidden\n"
        "source_modules =\n    mars_server.app\nforbidden_modules =\n    mars_server.db\n"
    )
    (tmp_path / "setup.cfg").write_text(config)
    result = lint(tmp_path / "setup.cfg")
    assert result.returncode == 1
    assert "canary BROKEN" in result.stdout
