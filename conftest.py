"""Repository-wide pytest settings.

Under ``MARS_TEST_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) the run fails unless the
PostgreSQL half of the suite ran and none of it was skipped.
"""

from __future__ import annotations

import os

import pytest

_postgres = {"passed": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "[postgresql" not in report.nodeid and "-postgresql" not in report.nodeid:
        return
    if report.when == "call" and report.passed:
        _postgres["passed"] += 1
    elif report.skipped:
        _postgres["skipped"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (
        os.environ.get("MARS_TEST_REQUIRE_POSTGRES") != "1"
        or session.config.getoption("--mars-db") == "sqlite"
    ):
        return
    if _postgres["passed"] == 0 or _postgres["skipped"]:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"PostgreSQL tests: {_postgres['passed']} passed, {_postgres['skipped']} skipped "
            "- MARS_TEST_REQUIRE_POSTGRES=1 demands they all run",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
