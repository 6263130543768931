"""The outbox of events, the jobs table, and the state of periodic schedules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, utcnow

QUEUED, RUNNING, SUCCEEDED, DEAD = "queued", "running", "succeeded", "dead"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, DEAD)


class OutboxEvent(Model):
    """An event, written in the transaction of the change it tells of.

    ``dispatched_at`` is set once the relay has turned it into one job per subscribed
    handler; the row stays for ``events_retention_days`` so handlers can read it.
    """

    __tablename__ = "mars_events"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: The users who may see the object it is about; ``None``: everyone.
    audience: Mapped[list[str] | None] = mapped_column(sa.JSON)
    actor_id: Mapped[str | None] = mapped_column(sa.String(64), info={"user_id": True})
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.Index(
            "ix_mars_events_undispatched",
            "occurred_at",
            postgresql_where=sa.text("dispatched_at IS NULL"),
            sqlite_where=sa.text("dispatched_at IS NULL"),
        ),
    )


class Job(Model):
    """A unit of background work.

    ``run_at`` is when a worker should take it: for a queued job, when it is due; for a
    running one, when its lease ends (a worker that died leaves it to be taken again).
    ``claim`` identifies the current lease: only its holder may finish the job.
    """

    __tablename__ = "mars_jobs"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(100))
    #: ``message`` holds a sealed e-mail (mail.send): ``mars keys rotate`` re-encrypts it
    kwargs: Mapped[dict[str, Any]] = mapped_column(sa.JSON, info={"sealed_keys": ("message",)})
    #: Makes enqueueing idempotent: a second job with the same key is not created.
    key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    run_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claim: Mapped[str | None] = mapped_column(sa.String(100))
    #: When the relay last handed it to Celery (Celery backend only).
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.Index(
            "ix_mars_jobs_due",
            "run_at",
            postgresql_where=sa.text("status IN ('queued', 'running')"),
            sqlite_where=sa.text("status IN ('queued', 'running')"),
        ),
        sa.Index("ix_mars_jobs_status_created", "status", "created_at"),
    )


class ScheduleState(Model):
    """When a periodic schedule next runs; the row is locked by the relay that enqueues it."""

    __tablename__ = "mars_schedules"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    next_run_at: Mapped[dt.datetime]
