"""Install every first-party plugin in ``plugins/`` (editable) that is not installed yet.

tox runs it before the suite, so adding a plugin folder touches no configuration. Offline:
``--no-deps`` (the core comes from this checkout, installed before) and no build isolation
(setuptools is in the dev extras).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def missing() -> list[Path]:
    """The plugin folders whose package this interpreter does not import from them."""
    folders = []
    for package in sorted(ROOT.glob("plugins/*/mars_*/__init__.py")):
        spec = find_spec(package.parent.name)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin != package.resolve():
            folders.append(package.parent.parent)
    return folders


def main() -> int:
    folders = missing()
    if not folders:
        return 0
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    for folder in folders:
        command += ["-e", str(folder)]
    print("installing", ", ".join(folder.name for folder in folders))
    return subprocess.run(command, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
