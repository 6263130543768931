"""Keeping the outbox and the jobs table small; listing and replaying jobs for operators."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import current_app

from mars_server.db import db, utcnow
from mars_server.events.models import DEAD, QUEUED, SUCCEEDED, Job, OutboxEvent
from mars_server.events.outbox import audit
from mars_server.metrics import purged


def purge(
    *, events_older_than_days: int | None = None, jobs_older_than_days: int | None = None
) -> dict[str, int]:
    """Delete dispatched events and succeeded jobs past their retention (the ``events.purge``
    task). Dead jobs stay until an operator purges them: they are the evidence."""
    settings = current_app.config["MARS"]
    now = utcnow()
    event_days = events_older_than_days or settings["EVENTS_RETENTION_DAYS"]
    job_days = jobs_older_than_days or settings["JOBS_RETENTION_DAYS"]
    events = db.session.execute(
        sa.delete(OutboxEvent).where(
            OutboxEvent.dispatched_at.is_not(None),
            OutboxEvent.occurred_at < now - dt.timedelta(days=event_days),
        )
    )
    jobs = db.session.execute(
        sa.delete(Job).where(
            Job.status == SUCCEEDED, Job.finished_at < now - dt.timedelta(days=job_days)
        )
    )
    counts = {"events": events.rowcount, "jobs": jobs.rowcount}  # type: ignore[attr-defined]
    for what, count in counts.items():
        purged(what, count)
    return counts


def purge_dead(*, task: str | None = None) -> int:
    """Delete dead jobs (of ``task``): an operator's decision, audited."""
    statement = sa.delete(Job).where(Job.status == DEAD)
    if task is not None:
        statement = statement.where(Job.task == task)
    count: int = db.session.execute(statement).rowcount  # type: ignore[attr-defined]
    audit("jobs.dead_purged", task=task, count=count)
    return count


def retry(job: Job) -> None:
    """Queue a dead (or waiting) job to run now, with a fresh count of attempts."""
    if job.status not in (DEAD, QUEUED):
        raise ValueError(f"job {job.id} is {job.status}; only dead or queued jobs are retried")
    audit("jobs.retried", target=job.id, task=job.task, previous_status=job.status)
    job.status = QUEUED
    job.attempts = 0
    job.run_at = utcnow()
    job.finished_at = None
    job.sent_at = None
