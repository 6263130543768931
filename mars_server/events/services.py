"""What operators do to background jobs, from the admin API (``/api/v1/jobs``) and the
``mars jobs`` commands alike: list them, retry dead ones, purge old ones. No HTTP here.

Every change commits, with its audit entry (as the operator's, or the admin's); a refused
one raises before writing anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server.db import db
from mars_server.events import maintenance
from mars_server.events.models import DEAD, Job
from mars_server.events.outbox import audit
from mars_server.http import Conflict, NotFound, paginate

if TYPE_CHECKING:
    from mars_server.http import Page


def _filtered(statement: sa.Select[Any], status: str | None, task: str | None) -> sa.Select[Any]:
    if status:
        statement = statement.where(Job.status == status)
    if task:
        statement = statement.where(Job.task == task)
    return statement


def list_jobs(args: dict[str, Any]) -> Page[Job]:
    """A page of jobs, oldest first, of ``args["status"]`` and ``args["task"]`` if given."""
    return paginate(
        _filtered(sa.select(Job), args.get("status"), args.get("task")), Job.id, args, name="jobs"
    )


def latest_jobs(
    *, status: str | None = None, task: str | None = None, limit: int = 50
) -> list[Job]:
    """The ``limit`` newest jobs (of ``status`` and ``task``, if given), newest first."""
    statement = sa.select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(db.session.scalars(_filtered(statement, status, task)))


def get_job(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job {job_id!r}.")
    return job


def retry_job(job_id: str) -> Job:
    """Queue a dead (or waiting) job to run now, with a fresh count of attempts; audited
    and committed. :class:`Conflict` for a job running or done."""
    job = get_job(job_id)
    try:
        maintenance.retry(job)
    except ValueError as error:
        raise Conflict(str(error)) from None
    db.session.commit()
    return job


def retry_dead_jobs(*, task: str | None = None) -> list[Job]:
    """Queue every dead job (of ``task``) to run again now; each one audited, all committed."""
    jobs = list(db.session.scalars(_filtered(sa.select(Job), DEAD, task)))
    for job in jobs:
        maintenance.retry(job)
    db.session.commit()
    return jobs


def purge_jobs(*, dead: bool = False, task: str | None = None) -> dict[str, int]:
    """Delete dispatched events and succeeded jobs past their retention, and with ``dead``
    the dead jobs (of ``task``) too; audited and committed. How many of each went, by
    ``events``, ``jobs`` and ``dead jobs``."""
    counts = maintenance.purge()
    audit("jobs.purged", events=counts["events"], jobs=counts["jobs"])
    if dead:
        counts["dead jobs"] = maintenance.purge_dead(task=task)
    db.session.commit()
    return counts
