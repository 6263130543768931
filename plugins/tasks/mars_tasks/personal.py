"""The tasks' part in a person's export and erasure (docs/privacy.md).

A task belongs to its project: the tasks a person created stay in their projects when the
person is erased, their ``created_by`` an id that then names nobody; the tasks of projects
deleted with the person go with those projects (``tasks.remove_with_project``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_server.db import db
from mars_server.hookspecs import PersonalData
from mars_tasks.models import Task

INVENTORY = [
    PersonalData(
        what="who created each task (their id)",
        where="tasks.created_by",
        why="to show who added a task to a project",
        kept="as long as the task",
        erasure="kept with the project's task: the id names nobody once the account is erased",
    )
]


def export(user_id: str) -> dict[str, Any]:
    tasks = [
        {
            "id": t.id,
            "project_id": t.project_id,
            "name": t.name,
            "description": t.description,
            "done": t.done,
            "created_at": t.created_at,
        }
        for t in db.session.scalars(
            sa.select(Task).where(Task.created_by == user_id).order_by(Task.id)
        )
    ]
    return {"tasks_created": tasks} if tasks else {}


def erase(user_id: str) -> list[str]:
    return []
