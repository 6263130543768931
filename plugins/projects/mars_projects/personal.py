"""The projects' part in a person's export and erasure (docs/privacy.md).

Erasing a person takes them out of every project. A project where they are the only member
goes with them. A project they alone own that has other members stops the deletion: the
person must first make another member an owner (or remove the others), so that nobody's
project is left without an owner or deleted under them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_projects import events, services
from mars_projects.models import Project, ProjectMember
from mars_server.db import db
from mars_server.hookspecs import PersonalData

INVENTORY = [
    PersonalData(
        what="which projects the person belongs to, and their role in each",
        where="project_members (user_id, role, added_at)",
        why="to decide who may see and change each project",
        kept="until the person leaves the project or the account is erased",
        erasure="removed from every project; projects where they were the only member are "
        "deleted; a project they alone own with other members blocks the deletion (409)",
    )
]


def _memberships(user_id: str) -> list[tuple[ProjectMember, Project]]:
    rows = db.session.execute(
        sa.select(ProjectMember, Project)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(ProjectMember.user_id == user_id)
        .order_by(Project.id)
    )
    return [(member, project) for member, project in rows]


def _counts(project_id: str, user_id: str) -> tuple[int, int]:
    """(other members, other owners) of the project."""
    others = sa.and_(ProjectMember.project_id == project_id, ProjectMember.user_id != user_id)
    members = db.session.scalar(sa.select(sa.func.count()).where(others)) or 0
    owners = (
        db.session.scalar(sa.select(sa.func.count()).where(others, ProjectMember.role == "owner"))
        or 0
    )
    return members, owners


def blockers(user_id: str) -> list[str]:
    reasons = []
    for member, project in _memberships(user_id):
        if member.role != "owner":
            continue
        members, owners = _counts(project.id, user_id)
        if members and not owners:
            reasons.append(
                f"You are the only owner of the project {project.name!r} ({project.id}), "
                "which has other members: make one of them an owner (or remove them) first."
            )
    return reasons


def export(user_id: str) -> dict[str, Any]:
    projects = [
        {
            "project_id": project.id,
            "name": project.name,
            "slug": project.slug,
            "visibility": project.visibility,
            "role": member.role,
            "added_at": member.added_at,
        }
        for member, project in _memberships(user_id)
    ]
    return {"memberships": projects} if projects else {}


def erase(user_id: str) -> list[str]:
    deleted = left = 0
    for member, project in _memberships(user_id):
        members, owners = _counts(project.id, user_id)
        if not members:
            services.delete_project(None, project, commit=False)
            deleted += 1
            continue
        if member.role == "owner" and not owners:
            raise RuntimeError(f"{project.id} would be left without an owner")  # blockers ran
        events.member_removed(project, user_id, member.role)
        db.session.delete(member)
        left += 1
    db.session.flush()
    lines = []
    if deleted:
        lines.append(f"{deleted} projects deleted (they had no other member)")
    if left:
        lines.append(f"removed from {left} projects")
    return lines
