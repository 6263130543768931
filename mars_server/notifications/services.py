"""A user's notifications and preferences: list, count, mark read, choose channels.

No HTTP here. Every function takes the user's id and touches only that user's rows, so
another user's notification does not exist for the caller (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server import plugin_settings
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import NotFound, Page, Sort, paginate
from mars_server.notifications.models import Notification, NotificationPreference
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


@dataclass(frozen=True)
class Channels:
    """Where a user gets one event type: in the app, by e-mail, both or neither."""

    in_app: bool
    email: bool


# --- Notifications -------------------------------------------------------------------------------


def list_notifications(user_id: str, args: dict[str, Any]) -> Page[Notification]:
    """One page of the user's notifications, newest first (``sort=id``: oldest first)."""
    stmt = sa.select(Notification).where(Notification.user_id == user_id)
    if "unread" in args:
        unread = Notification.read_at.is_(None)
        stmt = stmt.where(unread if args["unread"] else sa.not_(unread))
    sort = Sort({}, default="-id")
    return paginate(stmt, Notification.id, args, name=f"notifications:{user_id}", sort=sort)


def _notification(user_id: str, notification_id: str) -> Notification:
    notification = db.session.scalar(
        sa.select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user_id
        )
    )
    if notification is None:
        raise NotFound(f"No notification {notification_id!r}.")
    return notification


def unread_count(user_id: str) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.count()).where(
                Notification.user_id == user_id, Notification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(user_id: str, notification_id: str) -> Notification:
    """Mark one notification read; one read already keeps the time it was first read."""
    notification = _notification(user_id, notification_id)
    if notification.read_at is None:
        notification.read_at = utcnow()
        db.session.commit()
    return notification


def mark_all_read(user_id: str) -> int:
    """Mark every unread notification of the user read; return how many that was."""
    result = db.session.execute(
        sa.update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- Preferences ---------------------------------------------------------------------------------


def default_channels() -> Channels:
    return Channels(in_app=True, email=plugin_settings("notifications")["default_email"])


def channels_for(user_ids: Iterable[str], event_type: str) -> dict[str, Channels]:
    """Each user's channels for ``event_type``: their choice, else the defaults."""
    wanted = list(dict.fromkeys(user_ids))
    chosen = {
        row.user_id: Channels(row.in_app, row.email)
        for row in db.session.scalars(
            sa.select(NotificationPreference).where(
                NotificationPreference.user_id.in_(wanted),
                NotificationPreference.event_type == event_type,
            )
        )
    }
    default = default_channels()
    return {user_id: chosen.get(user_id, default) for user_id in wanted}


def _declared_event_types() -> dict[str, str]:
    types = mars_state().event_types
    return {name: types[name].description for name in sorted(types)}


def list_preferences(user_id: str) -> list[dict[str, Any]]:
    """One entry per declared event type, with the user's channels for it."""
    declared = _declared_event_types()
    chosen = {
        row.event_type: row
        for row in db.session.scalars(
            sa.select(NotificationPreference).where(NotificationPreference.user_id == user_id)
        )
    }
    default = default_channels()
    entries = []
    for name, description in declared.items():
        row = chosen.get(name)
        entries.append(
            {
                "event_type": name,
                "description": description,
                "in_app": row.in_app if row is not None else default.in_app,
                "email": row.email if row is not None else default.email,
            }
        )
    return entries


def set_preference(user_id: str, event_type: str, *, in_app: bool, email: bool) -> dict[str, Any]:
    """Choose the channels of ``event_type`` for the user; an undeclared type is a 404."""
    declared = _declared_event_types()
    if event_type not in declared:
        raise NotFound(f"No event type {event_type!r}.")
    row = db.session.get(NotificationPreference, (user_id, event_type))
    if row is None:
        defaults = default_channels()
        row = NotificationPreference(
            user_id=user_id, event_type=event_type, in_app=defaults.in_app, email=defaults.email
        )
        db.session.add(row)
    previous = (row.in_app, row.email)
    row.in_app, row.email = in_app, email
    if previous != (in_app, email):
        audit(
            "notifications.preference_changed",
            target=user_id,
            event_type=event_type,
            in_app=in_app,
            email=email,
        )
    db.session.commit()
    return {
        "event_type": event_type,
        "description": declared[event_type],
        "in_app": in_app,
        "email": email,
    }


# --- A purged plugin ----------------------------------------------------------------------------


def forget_plugin(name: str, event_types: Sequence[str], *, dry_run: bool = False) -> list[str]:
    """Delete every user's preferences for ``event_types`` and every ``<name>.*`` type
    (plugin ``name`` is purged), in the caller's transaction, which the caller commits.

    The notifications users already got stay: they are what the users were told. Return one
    line per kind of thing removed (with ``dry_run``: that would be, changing nothing).
    """
    event_type = NotificationPreference.event_type
    theirs = sa.or_(
        event_type.in_(list(event_types)), event_type.startswith(f"{name}.", autoescape=True)
    )
    found = db.session.scalars(sa.select(event_type).where(theirs)).all()
    if not found:
        return []
    if not dry_run:
        db.session.execute(sa.delete(NotificationPreference).where(theirs))
    count = len(found)
    return [
        f"{count} notification preference{'' if count == 1 else 's'} for "
        + ", ".join(sorted(set(found)))
    ]
