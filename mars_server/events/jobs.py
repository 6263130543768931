"""Background jobs: enqueued in the caller's transaction, run from the database with leases.

A worker *claims* due jobs in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite
has one writer at a time), which sets their lease. The task's writes and the job's completion
commit together; a lease that ran out (its worker died) lets another worker take the job again.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from flask import current_app

from mars_server import metrics
from mars_server.db import db, new_id, utcnow
from mars_server.events import context
from mars_server.events.models import DEAD, QUEUED, RUNNING, SUCCEEDED, Job
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flask import Flask

    from mars_server.hookspecs import Task

log = logging.getLogger(__name__)

#: ``outcome``: the job's state after the attempt: ``succeeded``, ``queued`` (to be retried),
#: ``dead``, ``running`` (its lease ran out and another worker has it).
JOB_ATTEMPTS = metrics.counter(
    "mars_job_attempts_total",
    "Job attempts run by this process, by task and outcome.",
    ("task", "outcome"),
)
JOB_DURATION = metrics.histogram(
    "mars_job_duration_seconds", "How long a job attempt ran, by task.", ("task",)
)

MAX_BACKOFF = 3600.0
ERROR_MAX = 4000


class UnknownTask(LookupError):
    """``enqueue`` was given a task no plugin declares (a programming error)."""


class Retry(Exception):
    """Raised by a task: keep what it wrote, and run it again later.

    :param after: wait at least this many seconds (a server's ``Retry-After``); the task's
        schedule applies otherwise.
    """

    def __init__(self, reason: str, *, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


@dataclass(frozen=True)
class RunningJob:
    """What a task may know of the job running it."""

    id: str
    task: str
    attempt: int
    max_attempts: int

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


_current_job: contextvars.ContextVar[RunningJob | None] = contextvars.ContextVar(
    "mars_current_job", default=None
)


def current_job() -> RunningJob | None:
    """The job being run in this thread, or ``None`` outside a job."""
    return _current_job.get()


def enqueue(
    task: str,
    *,
    key: str | None = None,
    run_at: dt.datetime | None = None,
    max_attempts: int | None = None,
    **kwargs: Any,
) -> str | None:
    """Add a job to the caller's transaction: it runs if and only if the transaction commits.

    :param task: a declared task's name.
    :param key: makes enqueueing idempotent: no second job with the same key is created
        (``None`` is returned then).
    :param run_at: not before this time (default: now).
    :param kwargs: the task's arguments; JSON values only, and never a secret in the clear.
    :return: the job's id.
    """
    declared = _task(task)
    if key is not None and db.session.scalar(sa.select(Job.id).where(Job.key == key)):
        return None
    job = Job(
        id=new_id("job"),
        task=task,
        kwargs=kwargs,
        key=key,
        status=QUEUED,
        attempts=0,
        max_attempts=max_attempts or declared.max_attempts,
        run_at=run_at or utcnow(),
        created_at=utcnow(),
    )
    db.session.add(job)
    notify_after_commit()
    return job.id


def _task(name: str) -> Task:
    task = mars_state().tasks.get(name)
    if task is None:
        raise UnknownTask(f"no plugin declares the task {name!r}")
    return task


# --- Waking the local worker ----------------------------------------------------------------------

#: Set when this process committed new work, so an embedded worker need not wait for its poll.
work_available = threading.Event()
#: Set when this process committed new events, so the relay dispatches them now.
events_available = threading.Event()


def notify_after_commit(*, events: bool = False) -> None:
    """Wake this process's worker once the current transaction commits."""
    session = db.session()
    if events:
        session.info["mars_wake_events"] = True
    if not session.info.get("mars_wakeup"):
        session.info["mars_wakeup"] = True
        sa.event.listen(session, "after_commit", _wake, once=True)


def _wake(session: Any) -> None:
    session.info.pop("mars_wakeup", None)
    if session.info.pop("mars_wake_events", False):
        events_available.set()
    work_available.set()


# --- Claiming and running -------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_claim() -> str:
    return f"{worker_name()}:{new_id('claim')[6:]}"


@dataclass(frozen=True)
class Claimed:
    id: str
    task: str
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int
    claim: str


def lease_end(now: dt.datetime, *, renewing: bool = False) -> sa.Case[Any]:
    """When a lease taken (or renewed) at ``now`` ends, per task: the task's ``timeout``.

    A worker that renews the leases of the jobs it runs (the embedded worker's heartbeat)
    uses ``MARS_JOBS_LEASE_SECONDS`` when shorter: a job whose worker died is then taken
    again soon, whatever its timeout, and a live worker keeps its long jobs.
    """
    tasks = mars_state().tasks
    lease = current_app.config["MARS"]["JOBS_LEASE_SECONDS"]

    def seconds(timeout: float) -> float:
        return min(timeout, lease) if renewing else timeout

    return sa.case(
        {name: now + dt.timedelta(seconds=seconds(t.timeout)) for name, t in tasks.items()},
        value=Job.task,
        else_=now + dt.timedelta(seconds=seconds(lease)),
    )


def renew_leases(claims: Iterable[str]) -> int:
    """Extend the leases of the running jobs held under ``claims``; commits."""
    claims = list(claims)
    if not claims:
        return 0
    result = db.session.execute(
        sa.update(Job)
        .where(Job.claim.in_(claims), Job.status == RUNNING)
        .values(run_at=lease_end(utcnow(), renewing=True))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount  # type: ignore[attr-defined]


def release(claimed: Iterable[Claimed]) -> int:
    """Give back claimed jobs that were not started: queued again, due now, this attempt
    not counted; commits."""
    released = 0
    for job in claimed:
        result = db.session.execute(
            sa.update(Job)
            .where(Job.id == job.id, Job.claim == job.claim, Job.status == RUNNING)
            .values(status=QUEUED, claim=None, run_at=utcnow(), attempts=Job.attempts - 1)
            .execution_options(synchronize_session=False)
        )
        released += result.rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return released


def claim_due(
    limit: int,
    *,
    job_id: str | None = None,
    now: dt.datetime | None = None,
    heartbeat: bool = False,
) -> list[Claimed]:
    """Take up to ``limit`` due jobs (or just ``job_id``), lease them, commit, return them.

    A job's lease is its task's ``timeout`` (see :func:`lease_end`; ``heartbeat``: the
    caller renews it); ``run_at`` becomes the lease's end. The earliest due are taken;
    they come back oldest first (by creation: their ``run_at`` is now the lease's), the
    order a worker should start them in (``RETURNING`` has no order of its own).
    """
    now = now or utcnow()
    due = sa.select(Job.id).where(Job.status.in_((QUEUED, RUNNING)), Job.run_at <= now)
    if job_id is not None:
        due = due.where(Job.id == job_id)
    due = due.order_by(Job.run_at).limit(limit).with_for_update(skip_locked=True)
    claim = new_claim()
    returned = db.session.execute(
        sa.update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            claim=claim,
            run_at=lease_end(now, renewing=heartbeat),
        )
        .returning(Job.id, Job.task, Job.kwargs, Job.attempts, Job.max_attempts, Job.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    rows = sorted(returned, key=lambda r: (r.created_at, r.id))
    return [Claimed(r.id, r.task, r.kwargs, r.attempts, r.max_attempts, claim) for r in rows]


def run_claimed(job: Claimed) -> str:
    """Run a claimed job in the current app context; return its new status."""
    started = time.perf_counter()
    status = _run_claimed(job)
    JOB_DURATION.labels(job.task).observe(time.perf_counter() - started)
    JOB_ATTEMPTS.labels(job.task, status).inc()
    return status


def _run_claimed(job: Claimed) -> str:
    tasks = mars_state().tasks
    task = tasks.get(job.task)
    running = RunningJob(job.id, job.task, job.attempts, job.max_attempts)
    token = _current_job.set(running)
    started = time.perf_counter()
    try:
        if task is None:
            return _fail(
                job, None, f"no plugin declares the task {job.task!r}", keep=False, dead=True
            )
        if job.attempts > job.max_attempts:  # taken again after its last lease ran out
            return _fail(
                job, task, "the worker running its last attempt stopped", keep=False, dead=True
            )
        with context.acting_as(context.ActingContext()):
            task.run(**job.kwargs)
    except Retry as retry:
        return _fail(job, task, str(retry) or "retry", keep=True, after=retry.after)
    except Exception as error:
        described = _describe(error)
        log.warning(
            "job %s (%s) attempt %d failed: %s",
            job.id,
            job.task,
            job.attempts,
            described,
            # A traceback's last line is the whole message, a database error's values too.
            exc_info=not isinstance(error, OSError | sa.exc.DBAPIError),
        )
        return _fail(job, task, described, keep=False)
    finally:
        _current_job.reset(token)
    finished = db.session.connection().execute(
        _FINISH, {"job_id": job.id, "job_claim": job.claim, "now": utcnow()}
    )
    if finished.rowcount != 1:
        db.session.rollback()  # our lease ran out and another worker has it: its run counts
        log.warning("job %s (%s) lost its lease; its work was rolled back", job.id, job.task)
        return RUNNING
    db.session.commit()
    log.debug("job %s (%s) done in %.3fs", job.id, job.task, time.perf_counter() - started)
    return SUCCEEDED


_jobs = cast("sa.Table", Job.__table__)
#: Built once: a job's completion is the hottest statement of the worker.
_FINISH = (
    sa.update(_jobs)
    .where(
        _jobs.c.id == sa.bindparam("job_id"),
        _jobs.c.claim == sa.bindparam("job_claim"),
        _jobs.c.status == RUNNING,
    )
    .values(status=SUCCEEDED, finished_at=sa.bindparam("now"), claim=None, last_error=None)
)


def _describe(error: BaseException) -> str:
    """What a failed attempt keeps as its last error, and logs.

    A database error is told by its class, its SQLSTATE (PostgreSQL) or the first line of its
    message (SQLite, whose messages name columns, not values), and the statement; never by
    the statement's values or PostgreSQL's message, whose text and DETAIL may quote them
    ('Key (email)=(...) already exists', 'invalid input syntax for type uuid: "..."').
    """
    if isinstance(error, sa.exc.DBAPIError):
        cause = error.orig if error.orig is not None else error
        sqlstate = getattr(cause, "sqlstate", None)
        reason = (
            f"SQLSTATE {sqlstate}" if sqlstate else (str(cause).strip().splitlines() or [""])[0]
        )
        return f"{type(cause).__name__}: {reason} [SQL: {error.statement}]"[:ERROR_MAX]
    lines = traceback.format_exception_only(type(error), error)
    return "".join(lines).strip()[:ERROR_MAX]


def retry_delay(task: Task | None, attempt: int) -> float:
    """Seconds before the attempt after ``attempt``: the task's schedule, or exponential
    backoff (1 s, 2 s, 4 s ... capped at one hour); with jitter either way."""
    if task is not None and task.retry_delays:
        delays = task.retry_delays
        base = delays[min(attempt - 1, len(delays) - 1)]
        return base * random.uniform(0.9, 1.1)
    base = min(MAX_BACKOFF, 2.0 ** (attempt - 1))
    return random.uniform(base / 2, base)


def _fail(
    job: Claimed,
    task: Task | None,
    error: str,
    *,
    keep: bool,
    dead: bool = False,
    after: float | None = None,
) -> str:
    if not keep:
        db.session.rollback()
    dead = dead or job.attempts >= job.max_attempts
    delay = retry_delay(task, job.attempts)
    if after is not None:
        delay = max(delay, after)
    now = utcnow()
    values: dict[str, Any] = {"claim": None, "last_error": error[:ERROR_MAX]}
    if dead:
        values.update(status=DEAD, finished_at=now)
    else:
        values.update(status=QUEUED, run_at=now + dt.timedelta(seconds=delay), sent_at=None)
    result = db.session.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.claim == job.claim)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        return RUNNING
    db.session.commit()
    if dead:
        log.error(
            "job %s (%s) is dead after %d attempt(s): %s", job.id, job.task, job.attempts, error
        )
    return DEAD if dead else QUEUED


def run_job_by_id(job_id: str) -> str | None:
    """Claim and run one job if it is due (how a Celery worker runs what the relay sent)."""
    claimed = claim_due(1, job_id=job_id)
    if not claimed:
        return None
    return run_claimed(claimed[0])


def run_in_app(app: Flask, job: Claimed) -> str:
    with app.app_context():
        try:
            return run_claimed(job)
        finally:
            db.session.remove()
