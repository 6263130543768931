"""The Celery backend (``MARS_JOBS_BACKEND=celery``): the database stays the record of every
job; Celery only carries job ids from the relay to the workers.

Messages are acknowledged after the job ran (``acks_late``) and given back when a worker
process dies (``task_reject_on_worker_lost``); a message lost anyway is sent again by the
relay once the job's lease has passed, and a job runs only under a lease it claimed in the
database, so a duplicate message never runs a job twice at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from mars_server.db import db
from mars_server.events import jobs
from mars_server.events.worker import Worker
from mars_server.ops import metrics as ops_metrics

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

RUN_JOB = "mars.run_job"


def make_celery(app: Flask) -> Celery:
    """The Celery app for ``app``, kept at ``app.extensions["mars_celery"]``."""
    existing = app.extensions.get("mars_celery")
    if existing is not None:
        return existing
    celery = Celery("mars", broker=app.config["MARS"]["CELERY_BROKER_URL"], set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue="mars",
    )

    @celery.task(name=RUN_JOB)
    def run_job(job_id: str) -> None:
        with app.app_context():
            try:
                jobs.run_job_by_id(job_id)
            finally:
                db.session.remove()

    app.extensions["mars_celery"] = celery
    return celery


def sender(app: Flask) -> Any:
    celery = make_celery(app)

    def send(job_id: str) -> None:
        celery.send_task(RUN_JOB, args=[job_id])

    return send


def relay_worker(app: Flask) -> Worker:
    """A worker that relays events and hands due jobs to the broker instead of running them."""
    return Worker(app, execute=False, send=sender(app))


def run_celery_worker(app: Flask, concurrency: int | None) -> None:
    celery = make_celery(app)

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_kwargs: Any) -> None:
        # A forked pool process must not share its parent's database connections.
        with app.app_context():
            db.engine.dispose(close=False)

    @worker_process_shutdown.connect(weak=False)
    def _forget_metrics(**_kwargs: Any) -> None:
        # Multiprocess mode: the live gauges of a pool process that exits stop counting.
        ops_metrics.forget_this_process()

    argv = ["worker", "--loglevel=INFO", "-Q", "mars"]
    argv.append(f"--concurrency={concurrency or app.config['MARS']['WORKER_CONCURRENCY']}")
    celery.worker_main(argv)
