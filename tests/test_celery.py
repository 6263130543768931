"""The Celery backend against the real Redis and RabbitMQ on this machine."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from mars_server.db import db
from mars_server.events import celery as celery_backend
from mars_server.events import emit, enqueue, relay
from mars_server.events.models import Job
from tests import fakes

#: About 25 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(25)

ROOT = Path(__file__).resolve().parents[1]
BROKERS = {
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/{n}"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672/{vhost}"),
}


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=sorted(BROKERS))
def broker(request):
    host, port, template = BROKERS[request.param]
    if not reachable(host, port):
        pytest.skip(f"{request.param} is not running on {host}:{port}")
    # Each test gets its own empty queue: a Redis database or the default vhost with a purge.
    url = template.format(n=15, vhost="")
    from kombu import Connection

    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        with contextlib.suppress(Exception):
            channel.queue_purge("mars")
    return url


@pytest.fixture
def app(install_plugins, make_app, broker):
    install_plugins(eventful="events")
    fakes.events.reset()
    app = make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL=broker)
    with app.app_context():
        yield app
    fakes.events.reset()


def celery_worker(database_url: str, instance: Path, broker: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.worker_process",
            "celery-worker",
            database_url,
            str(instance),
            broker,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the pool processes die with it
    )


def kill_group(process: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    """Stop the worker and its pool processes at once (``SIGKILL``: as a machine that dies
    would). A worker still there 30 s after ``SIGTERM`` is killed, as systemd would: jobs
    are acknowledged late, so nothing is lost (test_a_killed_celery_worker_loses_no_job)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def relay_until(app, done, timeout=90.0) -> None:
    from mars_server.events.celery import relay_worker

    relay = relay_worker(app)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay.relay_once()
        db.session.expire_all()
        if done():
            return
        time.sleep(0.1)
    pytest.fail("the Celery workers did not finish in time")


def statuses(ids) -> dict[str, str]:
    rows = db.session.execute(sa.select(Job.id, Job.status).where(Job.id.in_(ids))).all()
    return dict(rows)


def test_jobs_and_events_run_on_celery_workers(app, migrated_database, broker, tmp_path):
    marker = uuid.uuid4().hex
    job_ids = [enqueue("eventful.work", n=i, marker=marker) for i in range(40)]
    emit("thing.happened", {"id": "thg_celery", "name": "Carried"})
    db.session.commit()
    worker = celery_worker(migrated_database, tmp_path / "celery", broker)
    try:
        relay_until(
            app,
            lambda: (
                set(statuses(job_ids).values()) == {"succeeded"}
                and db.session.scalar(
                    sa.select(sa.func.count()).where(
                        Job.task == "events.handle", Job.status != "succeeded"
                    )
                )
                == 0
            ),
        )
    finally:
        kill_group(worker, signal.SIGTERM)
    handler_jobs = [
        job
        for job in db.session.scalars(sa.select(Job).where(Job.task == "events.handle"))
        if job.kwargs["handler"].startswith("eventful.")
    ]
    assert sorted(job.kwargs["handler"] for job in handler_jobs) == [
        "eventful.everything",
        "eventful.record",
    ]
    assert {job.status for job in handler_jobs} == {"succeeded"}
    assert all(job.attempts == 1 for job in handler_jobs)


def test_a_killed_celery_worker_loses_no_job(app, migrated_database, broker, tmp_path):
    job_id = enqueue("eventful.sleep", seconds=60)  # the first attempt hangs; lease: 2 s
    db.session.commit()
    first = celery_worker(migrated_database, tmp_path / "first", broker)
    try:
        relay_until(app, lambda: statuses([job_id])[job_id] == "running", timeout=60)
    finally:
        kill_group(first)
    second = celery_worker(migrated_database, tmp_path / "second", broker)
    try:
        relay_until(app, lambda: statuses([job_id])[job_id] == "succeeded", timeout=120)
    finally:
        kill_group(second, signal.SIGTERM)
    done = db.session.get(Job, job_id)
    assert done.attempts >= 2


def test_readyz_checks_the_broker(make_app, broker):
    app = make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL=broker)
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["broker"] == "ok"
    dead_port = socket.socket()
    dead_port.bind(("127.0.0.1", 0))
    port = dead_port.getsockname()[1]
    dead_port.close()
    down = make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    unready = down.test_client().get("/readyz")
    assert unready.status_code == 503
    assert unready.json["checks"]["broker"] == "failed"


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_jobs_the_broker_did_not_take_are_due_again_at_once(install_plugins, make_app):
    """The relay marks jobs sent before it sends them; when the broker is down, the send
    fails and the mark is taken back, so they go out as soon as it is back, not a lease
    (minutes) later."""
    install_plugins(eventful="events")
    app = make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0")
    with app.app_context():
        job_ids = [enqueue("eventful.work", n=i, marker="down") for i in range(3)]
        db.session.commit()
        with pytest.raises(Exception, match=r"(?i)connect|refused"):
            relay.hand_to_broker(celery_backend.sender(app))
        sent = db.session.execute(sa.select(Job.sent_at).where(Job.id.in_(job_ids))).scalars()
        assert set(sent) == {None}
        # The next pass hands the same jobs over again (to a broker that takes them).
        taken: list[str] = []
        assert relay.hand_to_broker(taken.append) == 3
        assert sorted(taken) == sorted(job_ids)


def test_celery_is_configured_to_acknowledge_late_and_requeue_on_worker_loss(make_app, broker):
    """The settings that make a message be acknowledged only after its job ran, and given
    back when a pool process dies. (Killing workers, above, cannot tell them apart from the
    relay's resend after the lease, which alone would also lose no job.)"""
    from mars_server.events.celery import make_celery

    celery = make_celery(make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL=broker))
    assert celery.conf.task_acks_late is True
    assert celery.conf.task_reject_on_worker_lost is True
    assert celery.conf.task_default_queue == "mars"
    assert celery.conf.accept_content == ["json"]  # never pickle from the broker
