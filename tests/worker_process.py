"""A MARS process with the ``eventful`` test plugin, for tests that kill processes.

``python -m tests.worker_process emit-and-die DATABASE_URL INSTANCE``: commit one event, then
SIGKILL itself before any worker could dispatch it.
``python -m tests.worker_process work DATABASE_URL INSTANCE``: run an embedded worker.
``python -m tests.worker_process work-one DATABASE_URL INSTANCE``: an embedded worker with one
thread that may deliver webhooks to loopback.
``python -m tests.worker_process celery-worker DATABASE_URL INSTANCE BROKER``: a Celery worker
(two processes).
"""

from __future__ import annotations

import os
import signal
import sys
from importlib.metadata import EntryPoint

import mars_server.plugins
from mars_server import create_app
from mars_server.testing import settings_for_tests


def install_eventful() -> None:
    real = mars_server.plugins.entry_points
    extra = EntryPoint("eventful", "tests.fakes:events", mars_server.plugins.ENTRY_POINT_GROUP)
    mars_server.plugins.entry_points = lambda *, group: [*real(group=group), extra]  # type: ignore[assignment]


def main(mode: str, database_url: str, instance: str, broker: str = "") -> None:
    install_eventful()
    extra: dict[str, object] = {}
    if broker:
        extra.update(JOBS_BACKEND="celery", CELERY_BROKER_URL=broker)
    if mode == "work-one":
        extra.update(WEBHOOKS_ALLOW_PRIVATE=True)
    app = create_app(
        settings_for_tests(
            database_url, instance, WORKER_POLL_SECONDS=0.05, JOBS_LEASE_SECONDS=1, **extra
        )
    )
    if mode == "emit-and-die":
        from mars_server.db import db
        from mars_server.events import emit

        with app.app_context():
            event = emit("thing.happened", {"id": "thg_killed", "name": "Survivor"})
            db.session.commit()
            print(event.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode in ("work", "work-one"):
        from mars_server.events.worker import Worker

        worker = Worker(app, concurrency=1 if mode == "work-one" else 2)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        print("working", flush=True)
        worker.run()
    elif mode == "celery-worker":
        from mars_server.events.celery import run_celery_worker

        run_celery_worker(app, 2)


if __name__ == "__main__":
    main(*sys.argv[1:])
