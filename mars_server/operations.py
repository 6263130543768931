"""Long-running operations, for plugins (docs/http.md#long-running-operations).

A request whose work outlives it starts an operation and answers 202 with its ``Location``;
a job does the work; the caller polls ``GET /api/v1/operations/{id}`` (the SDK's
``client.wait(operation)``) until it has succeeded, with a link to its result, or failed,
with a problem. Only the caller who started it sees it.

In a view::

    operation = operations.start("gadget.import", IMPORT_TASK, owner_id=actor.id, url=url)
    db.session.commit()
    return operations.accepted(operation)  # 202, Location: /api/v1/operations/op_...

and the task, declared with :func:`task` instead of ``Task``::

    def import_gadgets(operation_id: str, url: str) -> str:
        ...
        operations.progress(operation_id, 0.5)
        ...
        return f"/api/v1/gadgets/{gadget.id}"  # the result's path

    operations.task(IMPORT_TASK, import_gadgets, max_attempts=3)

Work that a plugin's own jobs carry over several runs (a webhook delivery and its retries)
makes its operation with :func:`create`, and says how it stands with :func:`advance` and
:func:`settle`, in whatever transaction records the work.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server.db import db, new_id, utcnow
from mars_server.events import current_job, enqueue
from mars_server.hookspecs import Task
from mars_server.http import MarsError, NotFound
from mars_server.http.problems import PROBLEM_TYPE_PREFIX
from mars_server.ops.models import Operation

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Operation",
    "accepted",
    "advance",
    "create",
    "get_for",
    "location",
    "progress",
    "settle",
    "start",
    "task",
]

log = logging.getLogger(__name__)

API_PATH = "/api/v1/operations"
FAILED_TYPE = PROBLEM_TYPE_PREFIX + "operation-failed"


def create(kind: str, *, owner_id: str) -> Operation:
    """A new, pending operation of ``owner_id`` (a user's or an app's id), in the caller's
    transaction, for work the caller's own jobs do (:func:`advance`, :func:`settle`)."""
    now = utcnow()
    operation = Operation(
        id=new_id("op"),
        kind=kind,
        owner_id=owner_id,
        status="pending",
        created_at=now,
        updated_at=now,
    )
    db.session.add(operation)
    db.session.flush()
    return operation


def start(kind: str, task_name: str, *, owner_id: str, **kwargs: Any) -> Operation:
    """A new operation of ``owner_id`` (a user's or an app's id), and the job of
    ``task_name`` that does it (given ``operation_id`` and ``kwargs``), in the caller's
    transaction."""
    operation = create(kind, owner_id=owner_id)
    enqueue(task_name, operation_id=operation.id, **kwargs)
    return operation


_OPEN = ("pending", "running")


def advance(operation_id: str, done: float, *, connection: sa.Connection | None = None) -> None:
    """The operation is under way, ``done`` (0 to 1) of it; in the caller's transaction (or
    on ``connection``). An operation that has ended stays as it ended."""
    statement = (
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.status.in_(_OPEN))
        .values(status="running", progress=min(1.0, max(0.0, done)), updated_at=utcnow())
    )
    (connection or db.session).execute(statement.execution_options(synchronize_session=False))


def settle(
    operation_id: str,
    *,
    result: str | None = None,
    problem: MarsError | None = None,
    connection: sa.Connection | None = None,
) -> None:
    """End the operation: succeeded, with the path of its ``result``, or failed with
    ``problem``; in the caller's transaction (or on ``connection``). Only an operation still
    under way changes: the first word on it stands."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now, "finished_at": now}
    if problem is None:
        values |= {"status": "succeeded", "progress": 1.0, "result": result}
    else:
        values |= {"status": "failed", "error": _problem(problem)}
    statement = (
        sa.update(Operation)
        .where(Operation.id == operation_id, Operation.status.in_(_OPEN))
        .values(**values)
    )
    (connection or db.session).execute(statement.execution_options(synchronize_session=False))


def location(operation: Operation | str) -> str:
    return f"{API_PATH}/{getattr(operation, 'id', operation)}"


def accepted(operation: Operation) -> tuple[Operation, int, dict[str, str]]:
    """What a view returns: the operation, 202, and its ``Location``."""
    return operation, 202, {"Location": location(operation)}


def get_for(owner_id: str | None, operation_id: str) -> Operation:
    """The operation, if ``owner_id`` started it; :class:`NotFound` for anyone else."""
    operation = db.session.get(Operation, operation_id)
    if operation is None or owner_id is None or operation.owner_id != owner_id:
        raise NotFound("No operation of yours has this id.")
    return operation


def _set(operation_id: str, **values: Any) -> None:
    """Change the operation so that its poller sees it now: on PostgreSQL in a transaction
    of its own; on SQLite, whose one writer may be this very job, with the job's work."""
    values["updated_at"] = utcnow()
    statement = sa.update(Operation).where(Operation.id == operation_id).values(**values)
    if db.session.get_bind().dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.execute(statement)
    else:
        db.session.execute(statement.execution_options(synchronize_session=False))


def progress(operation_id: str, done: float) -> None:
    """Say how far the work is, from 0 to 1."""
    _set(operation_id, progress=min(1.0, max(0.0, float(done))))


def _problem(error: BaseException) -> dict[str, Any]:
    """What the poller is told: a problem that says no more than an answer would."""
    if isinstance(error, MarsError):
        return {
            "type": error.type_,
            "title": error.title,
            "status": error.status,
            "detail": error.detail or "",
        }
    return {
        "type": FAILED_TYPE,
        "title": "The operation failed.",
        "status": 500,
        "detail": "An unexpected error stopped it; the operators have it in the logs.",
    }


def task(name: str, func: Callable[..., str | None], **options: Any) -> Task:
    """A :class:`~mars_server.hookspecs.Task` that runs ``func(operation_id=..., **kwargs)``
    and keeps the operation in step: running, then succeeded with the path ``func`` returns
    (committed with the job), or failed with a problem once its last attempt failed."""

    def run(operation_id: str, **kwargs: Any) -> None:
        _set(operation_id, status="running")
        try:
            result = func(operation_id=operation_id, **kwargs)
        except Exception as error:
            job = current_job()
            if job is None or job.is_last_attempt:
                db.session.rollback()
                now = utcnow()
                db.session.execute(
                    sa.update(Operation)
                    .where(Operation.id == operation_id)
                    .values(status="failed", error=_problem(error), updated_at=now, finished_at=now)
                )
                db.session.commit()
            raise
        now = utcnow()
        db.session.execute(
            sa.update(Operation)
            .where(Operation.id == operation_id)
            .values(
                status="succeeded", progress=1.0, result=result, updated_at=now, finished_at=now
            )
            .execution_options(synchronize_session=False)
        )

    return Task(name, run, **options)
