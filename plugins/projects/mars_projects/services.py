"""Business rules of projects. No HTTP here: views, commands and tests all call these.

Who may do what: anyone (even anonymous) sees public projects; members see private ones;
maintainers and owners change a project and its members; only owners delete it or make
owners. A project the caller may not see does not exist for them (404).

Every change emits its event (``events.py``) in the transaction that makes it: a refused or
rolled-back change emits nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_projects import api, events
from mars_projects.models import Project, ProjectMember
from mars_server import metrics, resources
from mars_server.db import db, new_id
from mars_server.http import (
    Conflict,
    Forbidden,
    NotFound,
    Sort,
    ValidationFailed,
    paginate,
    user_info,
)
from mars_server.search import matches

if TYPE_CHECKING:
    from mars_server.http import Actor, Page

WRITERS = ("owner", "maintainer")
#: What ``?sort=`` may name (each has an index: models.py) and ``?q=`` searches.
SORT = Sort(
    {
        "name": Project.name,
        "slug": Project.slug,
        "created_at": Project.created_at,
        "updated_at": Project.updated_at,
    },
    default="id",
)
SEARCHED = (Project.name, Project.slug, Project.description)
#: A slug taken by another project is a 409 pointing at ``slug``.
UNIQUE = {"slug": "The slug {value!r} is taken."}
#: A plugin's own metric, through the core's helper (docs/plugins.md#metrics).
PROJECTS_CREATED = metrics.counter(
    "mars_projects_created_total", "Projects created, by visibility.", ("visibility",)
)


def _visible(actor: Actor | None) -> sa.ColumnElement[bool]:
    public = Project.visibility == "public"
    if actor is None or actor.user_id is None:
        return public
    member_of = sa.select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    return sa.or_(public, Project.id.in_(member_of))


def list_projects(actor: Actor | None, args: dict[str, Any]) -> Page[Project]:
    stmt = sa.select(Project).where(_visible(actor))
    if args.get("visibility"):
        stmt = stmt.where(Project.visibility == args["visibility"])
    return paginate(
        stmt, Project.id, args, name="projects", sort=SORT, search=lambda q: matches(SEARCHED, q)
    )


def get_project(actor: Actor | None, project_id: str) -> Project:
    project = db.session.scalar(sa.select(Project).where(Project.id == project_id, _visible(actor)))
    if project is None:
        raise NotFound(f"No project {project_id!r}.")
    return project


def _require_role(actor: Actor | None, project: Project, roles: tuple[str, ...]) -> None:
    if api.role_of(actor.user_id if actor else None, project.id) not in roles:
        raise Forbidden(f"This needs the {' or '.join(roles)} role in the project.")


def create_project(owner_id: str, data: dict[str, Any]) -> Project:
    """Create a project owned by the user ``owner_id``."""
    project = Project(id=new_id("prj"), **data)
    db.session.add(ProjectMember(project_id=project.id, user_id=owner_id, role="owner"))
    members = [owner_id]
    resources.create(
        project, event=events.CREATED, audience=events.audience(project, members), unique=UNIQUE
    )
    PROJECTS_CREATED.labels(project.visibility).inc()
    return project


def create_project_for(actor: Actor, data: dict[str, Any]) -> Project:
    if actor.user_id is None:
        raise Forbidden("Projects belong to people: use a token of a user.")
    return create_project(actor.user_id, data)


def update_project(actor: Actor, project: Project, changes: dict[str, Any]) -> Project:
    _require_role(actor, project, WRITERS)
    members = api.member_ids(project.id)
    resources.update(
        project,
        changes,
        event=events.UPDATED,
        audience=lambda: events.audience(project, members),  # visibility after the change
        unique=UNIQUE,
        extra={"member_ids": members},
    )
    return project


def delete_project(actor: Actor | None, project: Project, *, commit: bool = True) -> None:
    """Delete ``project``; ``actor=None`` is an operator's override (the CLI) or an
    erasure."""
    if actor is not None:
        _require_role(actor, project, ("owner",))
    members = api.member_ids(project.id)
    resources.delete(
        project,
        event=events.DELETED,
        audience=events.audience(project, members),
        extra={"member_ids": members},
        commit=commit,
    )


def list_members(project: Project) -> list[ProjectMember]:
    return list(
        db.session.scalars(
            sa.select(ProjectMember)
            .where(ProjectMember.project_id == project.id)
            .order_by(ProjectMember.added_at, ProjectMember.user_id)
        )
    )


def members_of(project_ids: list[str]) -> dict[str, list[ProjectMember]]:
    """The members of each project (by id), oldest first, in one query; for lists of
    projects (GraphQL), where asking project by project would cost a query each."""
    found: dict[str, list[ProjectMember]] = {}
    rows = db.session.scalars(
        sa.select(ProjectMember)
        .where(ProjectMember.project_id.in_(project_ids))
        .order_by(ProjectMember.project_id, ProjectMember.added_at, ProjectMember.user_id)
    )
    for member in rows:
        found.setdefault(member.project_id, []).append(member)
    return found


def add_member(actor: Actor, project: Project, user_id: str, role: str) -> ProjectMember:
    _require_role(actor, project, ("owner",) if role == "owner" else WRITERS)
    info = user_info(user_id)
    if info is None or not info.active:
        raise ValidationFailed({"user_id": "No active user has this id."})
    member = db.session.get(ProjectMember, (project.id, user_id))
    if member is None:
        member = ProjectMember(project_id=project.id, user_id=user_id, role=role)
        db.session.add(member)
        db.session.flush()
        events.member_added(project, user_id, role)
    elif member.role != role:
        if member.role == "owner":
            _require_role(actor, project, ("owner",))
            _keep_an_owner(project, user_id)
        previous, member.role = member.role, role
        events.member_updated(project, user_id, role, previous)
    db.session.commit()
    return member


def _keep_an_owner(project: Project, leaving_user_id: str) -> None:
    owners = db.session.scalar(
        sa.select(sa.func.count()).where(
            ProjectMember.project_id == project.id,
            ProjectMember.role == "owner",
            ProjectMember.user_id != leaving_user_id,
        )
    )
    if not owners:
        raise Conflict("A project keeps at least one owner.")


def remove_member(actor: Actor, project: Project, user_id: str) -> None:
    member = db.session.get(ProjectMember, (project.id, user_id))
    if member is None:
        raise NotFound(f"{user_id!r} is not a member.")
    if actor.user_id != user_id:  # leaving is always allowed, removing others is not
        _require_role(actor, project, ("owner",) if member.role == "owner" else WRITERS)
    if member.role == "owner":
        _keep_an_owner(project, user_id)
    events.member_removed(project, user_id, member.role)
    db.session.delete(member)
    db.session.commit()


def count_projects() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Project)) or 0
