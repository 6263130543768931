"""Processes that die: nothing committed is lost, nothing rolled back appears."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mars_server.db import db
from mars_server.events import enqueue
from mars_server.events.models import Job, OutboxEvent
from mars_server.testing import run_due_jobs
from tests import fakes

#: About 16 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(16)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(install_plugins, make_app):
    install_plugins(eventful="events")
    fakes.events.reset()
    app = make_app()
    with app.app_context():
        yield app
    fakes.events.reset()


def process(mode: str, database_url: str, instance: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", mode, database_url, str(instance)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_event_committed_by_a_process_killed_before_dispatch_is_delivered(
    app, migrated_database, tmp_path
):
    dying = process("emit-and-die", migrated_database, tmp_path / "dying")
    output, errors = dying.communicate(timeout=60)
    assert dying.returncode == -signal.SIGKILL, errors
    event_id = output.strip()
    row = db.session.get(OutboxEvent, event_id)
    assert row is not None and row.dispatched_at is None  # committed, never dispatched

    run_due_jobs(app)  # the restarted worker
    assert [e.id for what, e in fakes.events.calls if what == "handled"] == [event_id]


def test_a_job_whose_worker_was_killed_runs_again_elsewhere(app, migrated_database, tmp_path):
    job_id = enqueue("eventful.sleep", seconds=60)
    db.session.commit()
    worker = process("work", migrated_database, tmp_path / "worker")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Job, job_id).status == "running":
                break
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.05)
        else:
            pytest.fail("the worker never took the job")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    db.session.expire_all()
    leased = db.session.get(Job, job_id)
    assert (leased.status, leased.attempts) == ("running", 1)  # its worker died holding it
    time.sleep(2.1)  # the task's 2 s lease runs out
    run_due_jobs(app)
    db.session.expire_all()
    done = db.session.get(Job, job_id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert ("slept", 2) in fakes.events.calls


def test_sigterm_lets_the_worker_finish_the_job_in_hand(app, migrated_database, tmp_path):
    worker = process("work", migrated_database, tmp_path / "worker")
    assert worker.stdout.readline().strip() == "working"
    job_id = enqueue("eventful.sleep", seconds=1)
    db.session.commit()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        db.session.expire_all()
        if db.session.get(Job, job_id).status == "running":
            break
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    assert worker.returncode == 0, worker.stderr.read()
    db.session.expire_all()
    assert db.session.get(Job, job_id).status == "succeeded"
    assert db.session.scalar(sa.select(sa.func.count()).where(Job.status == "running")) == 0


def test_a_live_worker_keeps_the_lease_of_a_long_job(app, migrated_database, tmp_path):
    """Leases of 1 s, renewed by the worker's heartbeat: a 4 s job is never taken twice."""
    from mars_server.events import jobs

    job_id = enqueue("eventful.sleep", seconds=4)
    db.session.commit()
    worker = process("work", migrated_database, tmp_path / "worker")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Job, job_id).status != "queued":
                break
            time.sleep(0.05)
        started = time.monotonic()
        while time.monotonic() - started < 3:  # three leases' worth: the heartbeat renews it
            assert jobs.claim_due(1, job_id=job_id) == []
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Job, job_id).status == "succeeded":
                break
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    done = db.session.get(Job, job_id)
    assert (done.status, done.attempts) == ("succeeded", 1)
