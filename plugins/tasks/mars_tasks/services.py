"""Business rules of tasks. No HTTP here: views, commands and tests all call these.

Who may do what: whoever may see a project (``mars_projects.api``) sees its tasks; its
members create, change and delete them. A task of a project the caller may not see does
not exist for them (404). Tasks go with their project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_projects import api as projects
from mars_server import resources
from mars_server.db import db
from mars_server.http import Forbidden, NotFound, paginate
from mars_tasks import events
from mars_tasks.models import Task

if TYPE_CHECKING:
    from mars_server.events import Event
    from mars_server.http import Actor, Page


def _user_id(actor: Actor | None) -> str | None:
    return actor.user_id if actor is not None else None


def _visible_project(actor: Actor | None, project_id: str) -> None:
    if not projects.can_see(_user_id(actor), project_id):
        raise NotFound(f"No project {project_id!r}.")


def _member_of(actor: Actor | None, project_id: str) -> str:
    _visible_project(actor, project_id)
    user_id = _user_id(actor)
    if user_id is None or projects.role_of(user_id, project_id) is None:
        raise Forbidden("Only the project's members change its tasks.")
    return user_id


def audience(project_id: str) -> list[str] | None:
    """Who hears of a task: everyone (``None``) for a public project, else its members."""
    return None if projects.can_see(None, project_id) else projects.member_ids(project_id)


def list_tasks(actor: Actor | None, project_id: str, args: dict[str, Any]) -> Page[Task]:
    _visible_project(actor, project_id)
    stmt = sa.select(Task).where(Task.project_id == project_id)
    if args.get("done") is not None:
        stmt = stmt.where(Task.done == args["done"])
    return paginate(stmt, Task.id, args, name=f"tasks:{project_id}")


def get_task(actor: Actor | None, project_id: str, task_id: str) -> Task:
    _visible_project(actor, project_id)
    found = db.session.get(Task, task_id)
    if found is None or found.project_id != project_id:
        raise NotFound(f"No task {task_id!r}.")
    return found


def create_task(actor: Actor | None, project_id: str, data: dict[str, Any]) -> Task:
    task = Task(project_id=project_id, created_by=_member_of(actor, project_id), **data)
    return resources.create(task, event=events.CREATED, audience=audience(project_id))


def update_task(actor: Actor | None, task: Task, changes: dict[str, Any]) -> Task:
    _member_of(actor, task.project_id)
    resources.update(task, changes, event=events.UPDATED, audience=audience(task.project_id))
    return task


def delete_task(actor: Actor | None, task: Task) -> None:
    """Delete ``task``; ``actor=None`` is an operator's override (the CLI)."""
    if actor is not None:
        _member_of(actor, task.project_id)
    resources.delete(task, event=events.DELETED, audience=audience(task.project_id))


def remove_with_project(event: Event) -> None:
    """``project.deleted``: its tasks go too (in the handler's job; idempotent)."""
    db.session.execute(sa.delete(Task).where(Task.project_id == event.payload["id"]))


def remove_orphans() -> None:
    """Daily: delete the tasks whose project is gone, which a project deleted while this
    plugin was disabled leaves behind (docs/events.md)."""
    project_ids = db.session.scalars(sa.select(Task.project_id).distinct()).all()
    gone = [project_id for project_id in project_ids if not projects.exists(project_id)]
    if gone:
        db.session.execute(sa.delete(Task).where(Task.project_id.in_(gone)))


def count_tasks() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Task)) or 0
