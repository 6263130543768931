"""In-app notifications and each user's choice of channels per event type."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, new_id, utcnow

TITLE_MAX = 200
LINK_MAX = 2000


class Notification(Model):
    """What a user was told about an event, in the app.

    ``user_id`` and ``event_id`` are public ids, not foreign keys: users belong to the auth
    plugin, and events are purged from the outbox long before their notifications go. The
    pair is unique, so a handler that runs again for the same event adds nothing. The id's
    time part and ``created_at`` are the event's time, so a list by id is in event order.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "event_id"),
        # A user's list, newest first, and their unread ones (list and count).
        sa.Index("ix_notifications_user_id_id", "user_id", "id"),
        sa.Index(
            "ix_notifications_unread",
            "user_id",
            "id",
            postgresql_where=sa.text("read_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("ntf"))
    user_id: Mapped[str] = mapped_column(sa.String(40), info={"user_id": True})
    #: who caused the event (their name may be in the text): erasing them renames them here
    actor_id: Mapped[str | None] = mapped_column(sa.String(64), index=True, info={"user_id": True})
    event_id: Mapped[str] = mapped_column(sa.String(40))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(TITLE_MAX))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    link: Mapped[str | None] = mapped_column(sa.String(LINK_MAX))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None]


class NotificationPreference(Model):
    """A user's channels for one event type; without a row, the defaults apply."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, info={"user_id": True})
    event_type: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    in_app: Mapped[bool]
    email: Mapped[bool]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
