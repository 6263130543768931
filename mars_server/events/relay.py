"""The relay: committed events become jobs, schedules become jobs, and (Celery backend) due
jobs are handed to the broker. Any number of relays may run: each step locks the rows it
takes (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server import metrics
from mars_server.db import db, new_id, utcnow
from mars_server.events.models import QUEUED, RUNNING, Job, OutboxEvent, ScheduleState
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mars_server.events.outbox import Event
    from mars_server.hookspecs import EventHandler

log = logging.getLogger(__name__)

EVENTS_RELAYED = metrics.counter(
    "mars_events_relayed_total", "Outbox events turned into their handlers' jobs by this process."
)

HANDLE_TASK = "events.handle"
BATCH = 500


def handlers_for(event_type: str) -> list[EventHandler]:
    handlers = mars_state().event_handlers.values()
    return [h for h in handlers if "*" in h.event_types or event_type in h.event_types]


def dispatch_events(limit: int = BATCH) -> int:
    """Turn up to ``limit`` undispatched events into jobs of their subscribed handlers; commits.

    Each handler gets the events it wants in jobs of up to ``handler.batch`` events, in the
    order they happened. The jobs and the ``dispatched_at`` mark commit together: an event
    is dispatched exactly once, and each job's key (``<handler>:<first event id>``) shows it.
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
    wanted: dict[str, list[str]] = {}
    handlers: dict[str, EventHandler] = {}
    for event_id, event_type in rows:
        for handler in handlers_for(event_type):
            handlers[handler.name] = handler
            wanted.setdefault(handler.name, []).append(event_id)
    jobs: list[dict[str, Any]] = []
    for name, event_ids in wanted.items():
        size = max(1, handlers[name].batch)
        for start in range(0, len(event_ids), size):
            chunk = event_ids[start : start + size]
            jobs.append(
                {
                    "id": new_id("job"),
                    "task": HANDLE_TASK,
                    "kwargs": {"handler": name, "event_ids": chunk},
                    "key": f"{name}:{chunk[0]}",
                    "status": QUEUED,
                    "attempts": 0,
                    "max_attempts": handlers[name].max_attempts,
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
    EVENTS_RELAYED.inc(len(rows))
    return len(rows)


def enqueue_schedules(now: dt.datetime | None = None) -> tuple[int, dt.datetime | None]:
    """Enqueue each schedule that is due, once across every relay; commits.

    :return: how many were enqueued, and when the next one is due (``None``: no schedules).
        Another relay may push a schedule later than that, never earlier, so a relay need
        not look again before then.
    """
    from mars_server.events.jobs import enqueue

    now = now or utcnow()
    schedules = mars_state().schedules
    if not schedules:
        return 0, None
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
        arguments: dict[str, Any] = dict(schedule.kwargs)  # never enqueue()'s own: create_app
        enqueue(schedule.task, **arguments)
        state.next_run_at = now + schedule.every
    db.session.commit()
    next_due = db.session.scalar(
        sa.select(sa.func.min(ScheduleState.next_run_at)).where(
            ScheduleState.name.in_(schedules.keys())
        )
    )
    db.session.rollback()
    if next_due is not None and next_due.tzinfo is None:
        next_due = next_due.replace(tzinfo=dt.UTC)
    return len(due), next_due


def hand_to_broker(send: Callable[[str], None], *, limit: int = BATCH) -> int:
    """(Celery backend) Send due jobs' ids to the broker; commits before sending.

    Due: queued and not sent yet, or sent longer than a lease ago (the message was lost); or
    running past the end of their lease (the worker died holding them).
    """
    now = utcnow()
    tasks = mars_state().tasks
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
    sent = 0
    try:
        for job_id in ids:
            send(job_id)
            sent += 1
    except Exception:
        # The broker took none of the rest (it is down): they are due again at once, when it
        # is back, not a lease later. Only those this pass marked, should another relay have
        # sent them since.
        db.session.execute(
            sa.update(Job)
            .where(Job.id.in_(ids[sent:]), Job.sent_at == now)
            .values(sent_at=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        raise
    return len(ids)


def load_events(event_ids: Sequence[str]) -> list[Event]:
    """The committed events of ``event_ids`` still kept, in the order they happened."""
    from mars_server.events.outbox import Event

    rows = db.session.execute(_LOAD_EVENTS, {"ids": list(event_ids)}).all()
    return [
        Event(
            id=row.id,
            type=row.type,
            payload=row.payload,
            occurred_at=row.occurred_at,
            actor_id=row.actor_id,
            audience=tuple(row.audience) if row.audience is not None else None,
            request_id=row.request_id,
        )
        for row in rows
    ]


_events = cast("sa.Table", OutboxEvent.__table__)
_LOAD_EVENTS = (
    sa.select(
        _events.c.id,
        _events.c.type,
        _events.c.payload,
        _events.c.occurred_at,
        _events.c.actor_id,
        _events.c.audience,
        _events.c.request_id,
    )
    .where(_events.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_events.c.occurred_at, _events.c.id)
)


def handle_events(
    handler: str, event_ids: Sequence[str] | None = None, event_id: str | None = None
) -> None:
    """The ``events.handle`` task: give committed events to one handler.

    A failing job of several events writes nothing and becomes one job per event (run at
    once), so the event that fails is retried alone and the others go through.
    """
    ids = list(event_ids or ()) + ([event_id] if event_id else [])
    found = mars_state().event_handlers.get(handler)
    if found is None:
        log.warning("events %s: handler %r is no longer installed; skipped", ids, handler)
        return
    events = load_events(ids)
    if len(events) < len(ids):
        gone = sorted(set(ids) - {event.id for event in events})
        log.warning("events %s are gone (purged); handler %r skips them", gone, handler)
    if not events:
        return
    if len(events) == 1:
        found.handle_all(events)
        return
    try:
        found.handle_all(events)
    except Exception as error:
        db.session.rollback()
        log.warning(
            "handler %r failed on a batch of %d events (%s); each is retried on its own",
            handler,
            len(events),
            error,
            exc_info=not isinstance(error, OSError),
        )
        from mars_server.events.jobs import enqueue

        for event in events:
            enqueue(
                HANDLE_TASK,
                max_attempts=found.max_attempts,
                handler=handler,
                event_ids=[event.id],
            )
