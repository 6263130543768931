"""The notifications' part in a person's export and erasure (docs/privacy.md)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from mars_server import plugin_settings
from mars_server.db import db, utcnow
from mars_server.hookspecs import PersonalData
from mars_server.http import user_info
from mars_server.metrics import purged
from mars_server.notifications.models import TITLE_MAX, Notification, NotificationPreference

#: What an erased person's name becomes in the notifications of others.
FORMER_USER = "A former user"

INVENTORY = [
    PersonalData(
        what="the person's notifications (title, text, link, when read) and their choice of "
        "channels per event type",
        where="notifications, notification_preferences",
        why="to tell the person what happened to what they follow, as they chose",
        kept="MARS_NOTIFICATIONS__RETENTION_DAYS (365 days by default), or until the "
        "account is erased",
        erasure="deleted; in other people's notifications of what the person did, their "
        "display name is replaced by 'A former user'",
    )
]


def purge() -> None:
    """The ``notifications.purge`` task: notifications past ``retention_days`` go."""
    days = plugin_settings("notifications")["retention_days"]
    result = db.session.execute(
        sa.delete(Notification).where(Notification.created_at < utcnow() - dt.timedelta(days=days))
    )
    purged("notifications", int(result.rowcount))  # type: ignore[attr-defined]


def export(user_id: str) -> dict[str, Any]:
    notes = db.session.scalars(
        sa.select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
    )
    preferences = db.session.scalars(
        sa.select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    data = {
        "notifications": [
            {
                "id": n.id,
                "event_type": n.event_type,
                "title": n.title,
                "body": n.body,
                "link": n.link,
                "created_at": n.created_at,
                "read_at": n.read_at,
            }
            for n in notes
        ],
        "preferences": [
            {
                "event_type": p.event_type,
                "in_app": p.in_app,
                "email": p.email,
                "updated_at": p.updated_at,
            }
            for p in preferences
        ],
    }
    return data if any(data.values()) else {}


def erase(user_id: str) -> list[str]:
    lines = []
    count = db.session.execute(
        sa.delete(Notification).where(Notification.user_id == user_id)
    ).rowcount  # type: ignore[attr-defined]
    if count:
        lines.append(f"{count} notifications deleted")
    count = db.session.execute(
        sa.delete(NotificationPreference).where(NotificationPreference.user_id == user_id)
    ).rowcount  # type: ignore[attr-defined]
    if count:
        lines.append(f"{count} notification preferences deleted")
    info = user_info(user_id)
    name = info.display_name if info is not None else ""
    if name:
        renamed = 0
        others = db.session.scalars(
            sa.select(Notification).where(
                Notification.actor_id == user_id,
                sa.or_(Notification.title.contains(name), Notification.body.contains(name)),
            )
        )
        # The name as a whole word: "Al" leaves "Alpha" alone.
        whole = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        for note in others:
            note.title = whole.sub(FORMER_USER, note.title)[:TITLE_MAX]
            note.body = whole.sub(FORMER_USER, note.body)
            renamed += 1
        if renamed:
            lines.append(f"their name removed from {renamed} notifications of others")
    db.session.execute(
        sa.update(Notification).where(Notification.actor_id == user_id).values(actor_id=None)
    )
    return lines
