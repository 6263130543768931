"""The events of projects: what they carry, emitting them, and who is notified of them.

Every change emits its event in the transaction that makes it, so an event exists if and
only if its change committed. The audience of an event about a private project is its
members (as they were just before the change, so a removed member still hears of it);
``None`` for a public project, which anyone may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import marshmallow as ma

from mars_projects.api import member_ids
from mars_projects.models import MEMBER_ROLES
from mars_projects.schemas import ProjectSchema
from mars_server.events import emit
from mars_server.hookspecs import EventType, NotificationDraft
from mars_server.http import API_PREFIX, user_info
from mars_server.resources import event_schema

if TYPE_CHECKING:
    from mars_projects.models import Project
    from mars_server.events import Event

CREATED = "project.created"
UPDATED = "project.updated"
DELETED = "project.deleted"
MEMBER_ADDED = "project.member_added"
MEMBER_UPDATED = "project.member_updated"
MEMBER_REMOVED = "project.member_removed"
#: what a webhook subscription to these events needs: they show what projects:read shows.
READ_SCOPE = "projects:read"

ProjectEventSchema = event_schema(ProjectSchema)
ProjectUpdatedEventSchema = event_schema(
    ProjectSchema,
    name="ProjectUpdatedEventSchema",
    doc="A project after a change, which of its fields the change touched, and its members.",
    changed=ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={"description": 'The fields whose value changed, e.g. `["name"]`.'},
    ),
    member_ids=ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={"description": "The ids of the users who are its members."},
    ),
)
ProjectDeletedEventSchema = event_schema(
    ProjectSchema,
    name="ProjectDeletedEventSchema",
    doc="A project as it was when it was deleted, and who its members were.",
    member_ids=ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={"description": "The ids of the users who were its members."},
    ),
)


class MemberEventSchema(ma.Schema):
    """A user's membership of a project."""

    class Meta:
        ordered = True

    project_id = ma.fields.String(required=True)
    project_name = ma.fields.String(required=True)
    project_slug = ma.fields.String(required=True)
    user_id = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": list(MEMBER_ROLES)})


class MemberUpdatedEventSchema(MemberEventSchema):
    """A member's new role, and the one they had before."""

    class Meta:
        ordered = True

    previous_role = ma.fields.String(required=True, metadata={"enum": list(MEMBER_ROLES)})


EVENT_TYPES = (
    EventType(CREATED, "A project was created.", ProjectEventSchema, READ_SCOPE),
    EventType(
        UPDATED,
        "A project's name, slug, description or visibility changed.",
        ProjectUpdatedEventSchema,
        READ_SCOPE,
    ),
    EventType(
        DELETED,
        "A project was deleted, with its memberships.",
        ProjectDeletedEventSchema,
        READ_SCOPE,
    ),
    EventType(MEMBER_ADDED, "A user was added to a project.", MemberEventSchema, READ_SCOPE),
    EventType(
        MEMBER_UPDATED, "A project member's role changed.", MemberUpdatedEventSchema, READ_SCOPE
    ),
    EventType(
        MEMBER_REMOVED,
        "A user was removed from a project, or left it.",
        MemberEventSchema,
        READ_SCOPE,
    ),
)


# --- Emitting -----------------------------------------------------------------------------------


def audience(project: Project, members: list[str] | None = None) -> list[str] | None:
    """Who may see ``project`` now: everyone (``None``) or its members (``members`` when the
    caller knows them)."""
    if project.visibility == "public":
        return None
    return members if members is not None else member_ids(project.id)


def _member(project: Project, user_id: str, role: str) -> dict[str, Any]:
    return {
        "project_id": project.id,
        "project_name": project.name,
        "project_slug": project.slug,
        "user_id": user_id,
        "role": role,
    }


def member_added(project: Project, user_id: str, role: str) -> None:
    """Call once the member is in the session: they are part of the audience."""
    emit(
        MEMBER_ADDED, _member(project, user_id, role), audience=audience(project), target=project.id
    )


def member_updated(project: Project, user_id: str, role: str, previous_role: str) -> None:
    emit(
        MEMBER_UPDATED,
        _member(project, user_id, role) | {"previous_role": previous_role},
        audience=audience(project),
        target=project.id,
    )


def member_removed(project: Project, user_id: str, role: str) -> None:
    """Call before deleting the membership: the removed member stays in the audience."""
    emit(
        MEMBER_REMOVED,
        _member(project, user_id, role),
        audience=audience(project),
        target=project.id,
    )


# --- Notifications ------------------------------------------------------------------------------


def _project_link(project_id: str) -> str:
    return f"{API_PREFIX}/projects/{project_id}"


def _who(event: Event) -> str | None:
    """The display name of the user who caused ``event``, when a user did."""
    if event.actor_id is None:
        return None
    info = user_info(event.actor_id)
    return (info.display_name or None) if info is not None else None


NOTIFIED = frozenset({MEMBER_ADDED, MEMBER_UPDATED, MEMBER_REMOVED, UPDATED, DELETED})


def notifications_for(event: Event) -> list[NotificationDraft]:
    """Who hears of ``event``: the member it is about, or every member of the project.

    The notifications plugin drops the user who caused the event and anyone outside its
    audience; this function only says who should hear of it, and what to tell them.
    """
    if event.type not in NOTIFIED:
        return []  # no lookup for the events nobody hears of
    data = event.payload
    who = _who(event)
    if event.type in (MEMBER_ADDED, MEMBER_UPDATED, MEMBER_REMOVED):
        name, role = data["project_name"], data["role"]
        link: str | None = _project_link(data["project_id"])
        if event.type == MEMBER_ADDED:
            title = f"You were added to {name} as {role}"
            body = f"{who} added you to the project {name} as {role}." if who else ""
        elif event.type == MEMBER_UPDATED:
            title = f"Your role in {name} is now {role}"
            body = f"{who} changed your role from {data['previous_role']} to {role}." if who else ""
        else:
            title = f"You were removed from {name}"
            body = f"{who} removed you from the project {name}." if who else ""
            link = None if event.audience is not None else link  # private: no longer yours
        return [NotificationDraft(data["user_id"], title, body, link)]
    if event.type == UPDATED:
        changed = ", ".join(data["changed"])
        body = f"{who} changed its {changed}." if who else f"Changed: {changed}."
        return [
            NotificationDraft(
                user_id, f"{data['name']} was changed", body, _project_link(data["id"])
            )
            for user_id in data["member_ids"]
        ]
    if event.type == DELETED:
        body = f"{who} deleted the project {data['name']}." if who else ""
        return [
            NotificationDraft(user_id, f"{data['name']} was deleted", body)
            for user_id in data["member_ids"]
        ]
    return []
