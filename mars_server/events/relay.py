"""The relay: committed events become jobs, schedules become jobs, and (Celery backend) due
jobs are handed to the broker. Any number of relays may run: each step locks the rows it
takes (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app

from mars_server.db import db, new_id, utcnow
from mars_server.events.models import QUEUED, RUNNING, Job, OutboxEvent, ScheduleState

if TYPE_CHECKING:
    from collections.abc import Callable

    from mars_server.hookspecs import EventHandler

log = logging.getLogger(__name__)

HANDLE_TASK = "events.handle"
BATCH = 500


def handlers_for(event_type: str) -> list[EventHandler]:
    handlers = current_app.extensions["mars"].event_handlers.values()
    return [h for h in handlers if "*" in h.event_types or event_type in h.event_types]


def dispatch_events(limit: int = BATCH) -> int:
    """Turn up to ``limit`` undispatched events into one job per subscribed handler; commits.

    The jobs and the ``dispatched_at`` mark commit together: an event is dispatched exactly
    once, and each handler job's key (``<handler>:<event id>``) makes that visible.
    """
    rows = db.session.execute(
        sa.select(OutboxEvent.id, OutboxEvent.type)
        .where(OutboxEvent.dispatched_at.is_(None))
        .order_by(OutboxEvent.occurred_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        db.session.rollback()
        return 0
    now = utcnow()
    jobs: list[dict[str, Any]] = []
    for event_id, event_type in rows:
        for handler in handlers_for(event_type):
            jobs.append(
                {
                    "id": new_id("job"),
                    "task": HANDLE_TASK,
                    "kwargs": {"handler": handler.name, "event_id": event_id},
                    "key": f"{handler.name}:{event_id}",
                    "status": QUEUED,
                    "attempts": 0,
                    "max_attempts": handler.max_attempts,
                    "run_at": now,
                    "created_at": now,
                }
            )
    if jobs:
        db.session.execute(sa.insert(Job), jobs)
    db.session.execute(
        sa.update(OutboxEvent)
        .where(OutboxEvent.id.in_([event_id for event_id, _ in rows]))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return len(rows)


def enqueue_schedules(now: dt.datetime | None = None) -> int:
    """Enqueue each schedule that is due, once across every relay; commits."""
    from mars_server.events.jobs import enqueue

    now = now or utcnow()
    schedules = current_app.extensions["mars"].schedules
    if not schedules:
        return 0
    known = set(db.session.scalars(sa.select(ScheduleState.name)))
    for name in schedules.keys() - known:
        db.session.add(ScheduleState(name=name, next_run_at=now))
    if schedules.keys() - known:
        try:
            db.session.commit()
        except sa.exc.IntegrityError:  # another relay added it first
            db.session.rollback()
    due = db.session.scalars(
        sa.select(ScheduleState)
        .where(ScheduleState.name.in_(schedules.keys()), ScheduleState.next_run_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for state in due:
        schedule = schedules[state.name]
        enqueue(schedule.task, **schedule.kwargs)
        state.next_run_at = now + schedule.every
    db.session.commit()
    return len(due)


def hand_to_broker(send: Callable[[str], None], *, limit: int = BATCH) -> int:
    """(Celery backend) Send due jobs' ids to the broker; commits before sending.

    Due: queued and not sent yet, or sent longer than a lease ago (the message was lost); or
    running past the end of their lease (the worker died holding them).
    """
    now = utcnow()
    tasks = current_app.extensions["mars"].tasks
    resend_before = {name: now - dt.timedelta(seconds=t.timeout) for name, t in tasks.items()}
    stale = sa.case(resend_before, value=Job.task, else_=now - dt.timedelta(seconds=300))
    ids = list(
        db.session.scalars(
            sa.select(Job.id)
            .where(
                Job.status.in_((QUEUED, RUNNING)),
                Job.run_at <= now,
                sa.or_(Job.sent_at.is_(None), Job.sent_at < stale),
            )
            .order_by(Job.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        db.session.rollback()
        return 0
    db.session.execute(
        sa.update(Job)
        .where(Job.id.in_(ids))
        .values(sent_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    for job_id in ids:
        send(job_id)
    return len(ids)


def handle_event(handler: str, event_id: str) -> None:
    """The ``events.handle`` task: give one committed event to one handler."""
    from mars_server.events.outbox import Event

    found = current_app.extensions["mars"].event_handlers.get(handler)
    if found is None:
        log.warning("event %s: handler %r is no longer installed; skipped", event_id, handler)
        return
    row = db.session.get(OutboxEvent, event_id)
    if row is None:
        log.warning("event %s is gone (purged); handler %r skipped", event_id, handler)
        return
    found.handle(Event.from_row(row))
