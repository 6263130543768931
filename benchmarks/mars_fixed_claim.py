"""``mars`` with the claim fix proposed by the webhook benchmark, for a what-if trial.

Run exactly like the ``mars`` command (``python benchmarks/mars_fixed_claim.py worker``).
Before handing over to MARS's own CLI it replaces, in this process only (no file changes),
``mars_server.events.jobs.claim_due`` and ``mars_server.events.relay.hand_to_broker`` by
copies whose only difference is how they find due jobs:

- the status filter is written with literals, ``status IN ('queued', 'running')``, the
  very predicate of the partial index ``ix_mars_jobs_due``, so a planner may use that
  index (with bound parameters neither SQLite nor a generic PostgreSQL plan can prove the
  predicate);
- on SQLite the index is named (``FROM mars_jobs INDEXED BY ix_mars_jobs_due``): without
  ``ANALYZE`` statistics SQLite prefers ``ix_mars_jobs_status_created`` for the status and
  then sorts every queued job by ``run_at``, for each claim.

MARS as shipped reads and sorts every queued job on each claim: with 10,000 jobs queued
that is ~5 ms of CPU per claim on SQLite, against ~5 µs through the partial index.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import sqlalchemy as sa
from flask import current_app

from mars_server.db import db, utcnow
from mars_server.events import jobs, relay
from mars_server.events.models import QUEUED, RUNNING, Job

DUE_STATUSES = sa.text("status IN ('queued', 'running')")
# Unqualified columns: the FROM clause is the (hinted) table alone.
_c = Job.__table__.c
ID, RUN_AT, SENT_AT, TASK = (
    sa.column(c.name, c.type) for c in (_c.id, _c.run_at, _c.sent_at, _c.task)
)


def _jobs_table() -> Any:
    if db.engine.dialect.name == "sqlite":
        return sa.text("mars_jobs INDEXED BY ix_mars_jobs_due")
    return Job.__table__


def claim_due(
    limit: int,
    *,
    job_id: str | None = None,
    now: dt.datetime | None = None,
    heartbeat: bool = False,
) -> list[jobs.Claimed]:
    """``jobs.claim_due`` with the due jobs found through ``ix_mars_jobs_due``."""
    now = now or utcnow()
    if job_id is not None:  # by primary key: the index question does not arise
        due = sa.select(Job.id).where(
            Job.id == job_id, Job.status.in_((QUEUED, RUNNING)), Job.run_at <= now
        )
    else:
        due = (
            sa.select(ID)
            .select_from(_jobs_table())
            .where(DUE_STATUSES, now >= RUN_AT)
            .order_by(RUN_AT)
        )
    due = due.limit(limit).with_for_update(skip_locked=True)
    claim = jobs.new_claim()
    rows = db.session.execute(
        sa.update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            claim=claim,
            run_at=_lease_end(now, heartbeat),
        )
        .returning(Job.id, Job.task, Job.kwargs, Job.attempts, Job.max_attempts)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return [jobs.Claimed(r.id, r.task, r.kwargs, r.attempts, r.max_attempts, claim) for r in rows]


def _lease_end(now: dt.datetime, heartbeat: bool) -> Any:
    """The lease as the MARS under test computes it (the core gained leases that renew)."""
    if hasattr(jobs, "lease_end"):
        return jobs.lease_end(now, renewing=heartbeat)
    tasks = current_app.extensions["mars"].tasks
    return sa.case(
        {name: now + dt.timedelta(seconds=task.timeout) for name, task in tasks.items()},
        value=Job.task,
        else_=now + dt.timedelta(seconds=300.0),
    )


def hand_to_broker(send: Any, *, limit: int = relay.BATCH) -> int:
    """``relay.hand_to_broker`` with the due jobs found through ``ix_mars_jobs_due``."""
    now = utcnow()
    tasks = current_app.extensions["mars"].tasks
    resend_before = {name: now - dt.timedelta(seconds=t.timeout) for name, t in tasks.items()}
    stale = sa.case(resend_before, value=TASK, else_=now - dt.timedelta(seconds=300))
    ids = list(
        db.session.scalars(
            sa.select(ID)
            .select_from(_jobs_table())
            .where(DUE_STATUSES, now >= RUN_AT, sa.or_(SENT_AT.is_(None), stale > SENT_AT))
            .order_by(RUN_AT)
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


def install() -> None:
    jobs.claim_due = claim_due
    relay.hand_to_broker = hand_to_broker


if __name__ == "__main__":
    install()
    from mars_server.ops.cli import main

    sys.argv[0] = "mars"
    sys.exit(main())
