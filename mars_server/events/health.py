"""Readiness of the job system: with the Celery backend, the broker must answer.

(A missing worker does not make a web server unready: requests still commit their events,
which wait in the outbox. ``mars jobs list`` and ``GET /api/v1/jobs`` show a backlog.)
"""

from __future__ import annotations

from flask import current_app

from mars_server.hookspecs import HealthCheck


def broker() -> None:
    settings = current_app.config["MARS"]
    if settings["JOBS_BACKEND"] != "celery":
        return
    from kombu import Connection

    with Connection(settings["CELERY_BROKER_URL"], connect_timeout=2) as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


CHECKS = [HealthCheck("broker", broker)]
