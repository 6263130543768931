"""The SDK as outside developers get it: the wheel and sdist of ``mars-platform-sdk`` pass
``twine check``, and the wheel, installed alone in a new virtual environment (no MARS, no
checkout on its path), runs the README's examples against a live MARS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.test_sdk_readme import (
    README,
    assert_readme_output,
    python_blocks,
    readme_variables,
    worker_running,
)

pytest_plugins = ["tests.sdk.fixtures"]
SDK = Path(__file__).resolve().parents[1] / "mars_sdk"
DISTRIBUTION = "mars-platform-sdk"


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True}  # the README's webhook goes to a local receiver


def run(*command: str | Path, **options) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **options,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The wheel and the sdist, built from a copy of mars_sdk/ (the checkout stays clean)."""
    where = tmp_path_factory.mktemp("sdk")
    source = where / "mars_sdk"
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(SDK, source, ignore=ignore)
    dist = where / "dist"
    run(
        sys.executable,
        "-m",
        "build",
        "--no-isolation",
        "--sdist",
        "--wheel",
        "--outdir",
        dist,
        source,
    )
    return dist


def test_the_wheel_and_sdist_pass_twine_check(built):
    names = sorted(p.name for p in built.iterdir())
    assert len(names) == 2
    assert names[0].startswith("mars_platform_sdk-") and names[0].endswith("-py3-none-any.whl")
    assert names[1].startswith("mars_platform_sdk-") and names[1].endswith(".tar.gz")
    out = run(Path(sys.executable).parent / "twine", "check", "--strict", *built.iterdir())
    assert out.count("PASSED") == 2


def test_the_installed_wheel_runs_the_readme(app, live_server, sdk, receiver, built, tmp_path):
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)  # installed into by this pip, below: quicker
    python = fresh / "bin" / "python"
    [wheel] = built.glob("*.whl")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel)
    where = run(
        python,
        "-c",
        "import importlib.metadata as m, mars_sdk; "
        f"print(m.version({DISTRIBUTION!r}), mars_sdk.__file__)",
        cwd=tmp_path,
    )
    assert str(fresh) in where.split()[1]  # the installed copy, not the checkout's
    # Only the SDK and what it needs: no MARS beside it.
    installed = run(python, "-c", "import importlib.util as u; print(u.find_spec('flask'))")
    assert installed.strip() == "None"

    developer = sdk()
    script = tmp_path / "readme.py"
    script.write_text("\n".join(python_blocks(README.read_text())))
    variables = readme_variables(developer, live_server, receiver)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MARS_"))}
    with worker_running(app):  # the long-running operation's job
        out = run(python, script, cwd=tmp_path, env={**clean, **variables})
    assert_readme_output(out, developer)
