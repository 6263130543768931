"""What other plugins may ask of projects: the only module of this plugin they may import.

An import-linter contract holds them to it (``tools/import_contracts.py``): models, services
and views stay this plugin's own, free to change. A plugin that builds on projects names it
in ``PluginInfo(requires_plugins=["projects>=0.1"])`` and asks, for example before it shows
a task of a project::

    from mars_projects import api as projects

    if not projects.can_see(actor.user_id, project_id):
        raise NotFound(...)

Every function reads the database in the caller's session and transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

from mars_projects.models import MEMBER_ROLES, Project, ProjectMember
from mars_server.db import db

__all__ = ["MEMBER_ROLES", "can_change", "can_see", "exists", "member_ids", "role_of"]


def exists(project_id: str) -> bool:
    """Whether the project exists (whoever may see it)."""
    return db.session.scalar(sa.select(sa.literal(True)).where(Project.id == project_id)) is True


def role_of(user_id: str | None, project_id: str) -> str | None:
    """The user's role in the project (``owner``, ``maintainer``, ``member``), or ``None``."""
    if user_id is None:
        return None
    return db.session.scalar(
        sa.select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )


def can_see(user_id: str | None, project_id: str) -> bool:
    """Whether the user (``None``: an anonymous caller) may see the project: it is public,
    or they are one of its members. ``False`` for a project that does not exist."""
    member: sa.ColumnElement[bool] = sa.false()
    if user_id is not None:
        member = Project.id.in_(
            sa.select(ProjectMember.project_id).where(ProjectMember.user_id == user_id)
        )
    visible = sa.or_(Project.visibility == "public", member)
    query = sa.select(sa.literal(True)).where(Project.id == project_id, visible)
    return db.session.scalar(query) is True


def can_change(user_id: str | None, project_id: str) -> bool:
    """Whether the user may change the project and what belongs to it: they are one of its
    owners or maintainers."""
    return role_of(user_id, project_id) in ("owner", "maintainer")


def member_ids(project_id: str) -> list[str]:
    """The ids of the project's members, oldest member first; ``[]`` for no such project."""
    return list(
        db.session.scalars(
            sa.select(ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id)
            .order_by(ProjectMember.added_at, ProjectMember.user_id)
        )
    )
