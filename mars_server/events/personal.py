"""The outbox's part in a person's export and erasure (docs/privacy.md): events the person
caused or may see are kept ``MARS_EVENTS_RETENTION_DAYS``; an erasure deletes those already
dispatched (the ones still waiting go out first, within seconds, and are purged with the
rest). Jobs hold no one's id; queued mail is sealed, and forgotten by its job once sent."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_server.db import db
from mars_server.events.models import OutboxEvent
from mars_server.hookspecs import PersonalData

INVENTORY = [
    PersonalData(
        what="events: what changed, who did it (their id) and who may see it (ids), with the "
        "payload of the change",
        where="mars_events (actor_id, audience, payload)",
        why="to hand changes to webhooks, notifications and other plugins reliably",
        kept="MARS_EVENTS_RETENTION_DAYS after dispatch (30 days by default)",
        erasure="the person's dispatched events deleted",
    ),
    PersonalData(
        what="queued e-mail (the address and the message), sealed",
        where="mars_jobs.kwargs of mail.send jobs",
        why="to deliver e-mail reliably, with retries",
        kept="until sent (the job then forgets it); a failed one until sent or purged",
        erasure="left to be sent or purged: the message is sealed and names no account",
    ),
]


def _theirs(user_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(
        OutboxEvent.actor_id == user_id,
        sa.cast(OutboxEvent.audience, sa.Text).contains(f'"{user_id}"', autoescape=True),
    )


def export(user_id: str) -> dict[str, Any]:
    rows = db.session.scalars(
        sa.select(OutboxEvent).where(OutboxEvent.actor_id == user_id).order_by(OutboxEvent.id)
    )
    events = [
        {"id": e.id, "type": e.type, "occurred_at": e.occurred_at, "payload": e.payload}
        for e in rows
    ]
    return {"events_caused": events} if events else {}


def erase(user_id: str) -> list[str]:
    count = db.session.execute(
        sa.delete(OutboxEvent)
        .where(_theirs(user_id), OutboxEvent.dispatched_at.is_not(None))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return [f"{count} dispatched events deleted"] if count else []
