"""The load test's 30-second smoke run (loadtests/run.py --smoke): gunicorn on PostgreSQL, a
worker, Redis and a webhook receiver, ten Locust users of every kind; not one error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mars_server.testing import POSTGRES_SKIP_REASON, xdist_worker

ROOT = Path(__file__).resolve().parents[1]

#: tox runs it on its own, after the suite: it keeps both cores busy for half a minute, and
#: the suite's tests that wait on a server with short timeouts would fail beside it.
pytestmark = pytest.mark.load_smoke


def test_the_smoke_run_gets_no_error_and_loses_no_webhook(redis_url, tmp_path):
    url = os.environ.get("MARS_TEST_DATABASE_URL")
    if not url:
        if os.environ.get("CI") or os.environ.get("MARS_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("the load smoke run needs PostgreSQL: " + POSTGRES_SKIP_REASON)
        pytest.skip(POSTGRES_SKIP_REASON)
    base = sa.make_url(url)
    database = base.set(database=f"{base.database}_{xdist_worker() or 'main'}_load")
    command = [
        sys.executable, str(ROOT / "loadtests" / "run.py"), "--smoke",
        "--database-url", database.render_as_string(hide_password=False),
        "--redis-url", redis_url, "--out", str(tmp_path),
    ]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARS_", "PYTEST"))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=clean)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "FAIL" not in done.stdout
    summary = next(line for line in done.stdout.splitlines() if line.startswith("10 users for"))
    assert summary.endswith(" 0 failed (0.00%)"), summary
    webhooks = next(line for line in done.stdout.splitlines() if line.startswith("webhooks:"))
    assert ", 0 badly signed" in webhooks and "deliveries {'succeeded'" in webhooks
