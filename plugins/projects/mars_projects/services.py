"""Business rules of projects. No HTTP here: views, commands and tests all call these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_projects.models import Project
from mars_server.db import db
from mars_server.http import Conflict, NotFound, paginate

if TYPE_CHECKING:
    from mars_server.http import Page


def list_projects(args: dict[str, Any]) -> Page[Project]:
    stmt = sa.select(Project)
    if args.get("visibility"):
        stmt = stmt.where(Project.visibility == args["visibility"])
    return paginate(stmt, Project.id, args, name="projects")


def get_project(project_id: str) -> Project:
    project = db.session.get(Project, project_id)
    if project is None:
        raise NotFound(f"No project {project_id!r}.")
    return project


def _slug_taken(slug: str) -> Conflict:
    return Conflict(
        f"The slug {slug!r} is taken.",
        errors=[{"detail": "Already taken.", "pointer": "/slug", "location": "json"}],
    )


def create_project(data: dict[str, Any]) -> Project:
    project = Project(**data)
    db.session.add(project)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise _slug_taken(data["slug"]) from None
    return project


def update_project(project: Project, changes: dict[str, Any]) -> Project:
    for name, value in changes.items():
        setattr(project, name, value)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise _slug_taken(changes["slug"]) from None
    return project


def delete_project(project: Project) -> None:
    db.session.delete(project)
    db.session.commit()


def count_projects() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Project)) or 0
