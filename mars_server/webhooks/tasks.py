"""The background tasks of the webhooks plugin: what each runs, its retries and its lease."""

from __future__ import annotations

from mars_server.hookspecs import Task
from mars_server.webhooks.maintenance import PURGE_TASK, purge
from mars_server.webhooks.sending import BATCH_SECONDS, deliver
from mars_server.webhooks.services import DELIVER_TASK

TASKS = [
    Task(
        DELIVER_TASK,
        deliver,
        # Failed requests are retried by the delivery's own schedule, each a job of its
        # own; these are for a job that failed itself (the database went away).
        max_attempts=5,
        # The lease: a job begins no attempt after BATCH_SECONDS, and one attempt lasts
        # at most timeout_seconds (itself at most 15).
        timeout=BATCH_SECONDS + 120.0,
    ),
    Task(PURGE_TASK, purge, max_attempts=3),
]
