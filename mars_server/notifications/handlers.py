"""The ``notifications.from_event`` event handler: committed events become notifications.

For each event, every plugin's ``mars_notifications`` hook drafts notifications; each draft
then reaches its user in the app and/or by e-mail, as the user chose for the event type.
Nobody hears of what they did themselves, of what they may not see, or while inactive.

The handler runs as a background job: the rows it adds and the ``mail.send`` jobs it
enqueues commit together with the job's completion, or not at all, so a crashed run leaves
nothing behind. The unique ``(user_id, event_id)`` of notifications covers the rest: a run
that finds a user's notification of the event already there skips that user, in the app and
by e-mail, and two runs racing cannot both add one.
"""

from __future__ import annotations

import logging
from email.utils import formataddr
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import sqlalchemy as sa
from ulid import ULID

from mars_server import public_url
from mars_server.db import db
from mars_server.mail import send_mail
from mars_server.notifications.models import LINK_MAX, TITLE_MAX, Notification
from mars_server.notifications.services import channels_for
from mars_server.state import mars_state

if TYPE_CHECKING:
    import datetime as dt

    from mars_server.events import Event
    from mars_server.hookspecs import NotificationDraft, UserInfo

log = logging.getLogger(__name__)

HANDLER_NAME = "notifications.from_event"
MAIL_TEMPLATE = "notification"


def notify(event: Event) -> None:
    """Turn ``event`` into the notifications the plugins draft for it (the handler)."""
    plugins = mars_state().plugins
    drafts: dict[str, NotificationDraft] = {}
    for draft in plugins.notifications(event):
        # One notification per user and event: the first plugin to draft one wins.
        drafts.setdefault(draft.user_id, draft)
    if not drafts:
        return
    recipients: dict[str, UserInfo] = {}
    for user_id in drafts:
        if user_id == event.actor_id or not event.visible_to(user_id):
            continue
        info = plugins.user_info(user_id)
        if info is not None and info.active:
            recipients[user_id] = info
    if not recipients:
        return
    already = set(
        db.session.scalars(
            sa.select(Notification.user_id).where(
                Notification.event_id == event.id, Notification.user_id.in_(list(recipients))
            )
        )
    )
    channels = channels_for(recipients, event.type)
    for user_id, info in recipients.items():
        if user_id in already:
            continue
        draft = drafts[user_id]
        link = draft.link if draft.link and len(draft.link) <= LINK_MAX else None
        if draft.link and link is None:
            log.warning(
                "event %s: a notification link over %d characters dropped", event.id, LINK_MAX
            )
        if channels[user_id].in_app:
            db.session.add(
                Notification(
                    id=_id_at(event.occurred_at),
                    user_id=user_id,
                    event_id=event.id,
                    event_type=event.type,
                    actor_id=event.actor_id,
                    title=_one_line(draft.title)[:TITLE_MAX],
                    body=draft.body,
                    link=link,
                    created_at=event.occurred_at,
                )
            )
        if channels[user_id].email and info.email:
            _mail(info, event, draft, link)


def _id_at(when: dt.datetime) -> str:
    """A notification id that sorts by when its event happened, not by when a worker got to
    it: handler jobs run in parallel and in any order, an inbox reads newest first."""
    return f"ntf_{str(ULID.from_datetime(when)).lower()}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _absolute(link: str | None) -> str | None:
    """``link`` as a mail reader can open it: relative links go after ``MARS_PUBLIC_URL``."""
    if link is None:
        return None
    return urljoin(public_url() + "/", link.lstrip("/"))


def _mail(info: UserInfo, event: Event, draft: NotificationDraft, link: str | None) -> None:
    assert info.email is not None
    try:
        send_mail(
            formataddr((info.display_name, info.email)),
            MAIL_TEMPLATE,
            display_name=info.display_name or info.email,
            title=_one_line(draft.title),
            body=draft.body,
            link=_absolute(link),
            event_type=event.type,
            preferences_path=f"/api/v1/me/notification-preferences/{event.type}",
        )
    except ValueError:
        # One unusable address must not hold back everyone else's notifications (a retry
        # would fail the same way); the in-app notification stands.
        log.warning("event %s: user %s has no usable e-mail address; not mailed", event.id, info.id)
