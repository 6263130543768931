"""1,000 webhook deliveries while the worker is killed (SIGKILL) ten times: none is lost,
and each kill repeats at most the one request its single thread had in flight."""

from __future__ import annotations

import random
import signal
import time

import pytest
import sqlalchemy as sa

from mars_server.db import db
from mars_server.events import emit
from mars_server.testing import signed_in_client
from mars_server.webhooks.models import WebhookDelivery
from tests import fakes
from tests.test_worker_processes import process
from tests.webhook_receiver import Receiver

#: About 16 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(16)

DELIVERIES = 1000
KILLS = 10


@pytest.fixture
def app(install_plugins, make_app):
    install_plugins(eventful="events")
    fakes.events.reset()
    app = make_app(WEBHOOKS_ALLOW_PRIVATE=True)
    with app.app_context():
        yield app
    fakes.events.reset()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def statuses() -> dict[str, int]:
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(WebhookDelivery.status, sa.func.count()).group_by(WebhookDelivery.status)
    ).all()
    db.session.rollback()
    return dict(rows)


def wait_for(condition, worker, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited: {worker.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_every_delivery_arrives_through_ten_sigkills(app, migrated_database, receiver, tmp_path):
    client = signed_in_client(app)
    created = client.post(
        "/api/v1/webhooks", json={"url": receiver.url(), "events": ["thing.happened"]}
    )
    assert created.status_code == 201, created.json
    for n in range(DELIVERIES):
        emit("thing.happened", {"id": f"thg_{n}", "name": f"thing {n}"})
    db.session.commit()

    rng = random.Random(1234)
    for kill in range(KILLS):
        worker = process("work-one", migrated_database, tmp_path / f"worker{kill}")
        try:
            # Kill it at a random point while it delivers, never after it is done.
            target = min(len(receiver.requests) + rng.randint(20, 80), DELIVERIES - 20)
            reached = lambda goal=target: len(receiver.requests) >= goal  # noqa: E731
            wait_for(reached, worker, 120, f"kill {kill}")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)

    last = process("work-one", migrated_database, tmp_path / "last")
    try:
        wait_for(lambda: statuses() == {"succeeded": DELIVERIES}, last, 300, "every delivery")
    finally:
        last.send_signal(signal.SIGTERM)
        last.wait(30)

    delivered = set(db.session.scalars(sa.select(WebhookDelivery.id)))
    assert len(delivered) == DELIVERIES
    received = [request.headers["webhook-id"] for request in receiver.requests]
    assert set(received) == delivered, "every webhook-id arrived, and no other"
    duplicates = len(received) - len(set(received))
    assert duplicates <= KILLS, f"{duplicates} duplicates for {KILLS} kills"
