"""Business rules of tasks. No HTTP here: views, commands and tests all call these.

Who may do what: a task belongs to the user who created it; only they see it,
change it or delete it. One they may not see does not exist for them (404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server import resources
from mars_server.db import db
from mars_server.http import Forbidden, NotFound, paginate
from mars_tasks import events
from mars_tasks.models import Task

if TYPE_CHECKING:
    from mars_server.http import Actor, Page


def _owner_id(actor: Actor | None) -> str:
    if actor is None or actor.user_id is None:
        raise Forbidden("Tasks belong to people: use a token of a user.")
    return actor.user_id


def list_tasks(actor: Actor | None, args: dict[str, Any]) -> Page[Task]:
    stmt = sa.select(Task).where(Task.owner_id == _owner_id(actor))
    return paginate(stmt, Task.id, args, name="tasks")


def get_task(actor: Actor | None, task_id: str) -> Task:
    found = db.session.get(Task, task_id)
    if found is None or found.owner_id != _owner_id(actor):
        raise NotFound(f"No task {task_id!r}.")
    return found


def create_task(actor: Actor | None, data: dict[str, Any]) -> Task:
    owner_id = _owner_id(actor)
    return resources.create(
        Task(owner_id=owner_id, **data), event=events.CREATED, audience=[owner_id]
    )


def update_task(actor: Actor | None, task: Task, changes: dict[str, Any]) -> Task:
    resources.update(task, changes, event=events.UPDATED, audience=[_owner_id(actor)])
    return task


def delete_task(actor: Actor | None, task: Task) -> None:
    """Delete ``task``; ``actor=None`` is an operator's override (the CLI)."""
    resources.delete(task, event=events.DELETED, audience=[task.owner_id])


def count_tasks() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Task)) or 0
