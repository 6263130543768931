"""Meta-test: the SDK tests call every operation of the OpenAPI document, successfully.

It runs the SDK's live tests, every test marked ``mars_sdk_live`` in ``tests/`` and in each
plugin's tests (``plugins/*/tests``: the files that mark them), in a pytest of their own with
a recorder on every SDK client (``MARS_TEST_SDK_RECORD``), maps each recorded request back to
its operation, and fails naming any operationId that no SDK call got a success (2xx or 304)
from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mars_server.ops.commands import openapi_document
from mars_server.testing import SDK_RECORD_ENV as RECORD_ENV
from tests.sdk import operation_of

#: About 12 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(12)

ROOT = Path(__file__).resolve().parents[1]


#: Every test marked mars_sdk_live, wherever it is; -rA lists them.
LIVE_TESTS = ["-m", "mars_sdk_live", "--mars-db=sqlite", "-q", "-rA", "-p", "no:cacheprovider"]


def live_test_files() -> list[str]:
    """The test files of ``tests/`` and ``plugins/*/tests`` that mark tests ``mars_sdk_live``:
    collecting only them spares the run importing (and building apps for) every other one."""
    found = [
        path.relative_to(ROOT).as_posix()
        for folder in (ROOT / "tests", *ROOT.glob("plugins/*/tests"))
        for path in sorted(folder.rglob("test_*.py"))
        if path.name != Path(__file__).name and "mars_sdk_live" in path.read_text()
    ]
    assert found, "no test file marks its tests mars_sdk_live"
    return found


@pytest.mark.mars_backend("sqlite")
def test_every_operation_is_exercised_by_the_sdk_tests(app, tmp_path):
    spec = openapi_document()
    operations = {
        operation["operationId"]
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    record = tmp_path / "calls.jsonl"
    # pytest finds its plugins itself there (tox names MARS's own: see tox.ini).
    skip = ("MARS_", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env[RECORD_ENV] = str(record)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *live_test_files(), *LIVE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    # The plugins' own SDK tests were among them.
    passed = "PASSED plugins/projects/tests/test_projects_sdk.py::test_projects_create_get_list"
    assert passed in run.stdout
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    succeeded = {
        operation_of(spec, call["method"], call["path"])
        for call in calls
        if 200 <= call["status"] < 300 or call["status"] == 304
    }
    assert len(calls) > len(operations)
    missing = sorted(operations - succeeded)
    assert not missing, f"no SDK test calls these operations successfully: {missing}"


def test_requests_map_to_their_operations():
    spec = {
        "paths": {
            "/api/v1/things/{id}": {"get": {"operationId": "get_thing"}},
            "/api/v1/things/count": {"get": {"operationId": "count_things"}},
        }
    }
    assert operation_of(spec, "GET", "/api/v1/things/thg_1") == "get_thing"
    assert operation_of(spec, "GET", "/api/v1/things/count") == "count_things"
    assert operation_of(spec, "POST", "/api/v1/things/count") is None
