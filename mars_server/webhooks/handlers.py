"""The ``webhooks.fan_out`` event handler: committed events become deliveries and their jobs.

For a batch of events it reads the subscribed endpoints once, asks once per owner whether
they are active, writes every new delivery in one statement, and enqueues one
``webhooks.deliver`` job per endpoint and ``DELIVER_BATCH`` deliveries. A delivery goes only
to an enabled endpoint whose owner is active and may see the event; the unique (event,
endpoint) pair makes a second run over the same events create nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server.db import db, new_id, utcnow
from mars_server.events import enqueue
from mars_server.hookspecs import EventHandler
from mars_server.http import user_info
from mars_server.webhooks.models import (
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from mars_server.webhooks.services import DELIVER_TASK, first_attempt
from mars_server.webhooks.signing import body_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mars_server.events import Event

FAN_OUT = "webhooks.fan_out"
#: The most deliveries one ``webhooks.deliver`` job attempts, one after the other.
DELIVER_BATCH = 20

_deliveries = cast("sa.Table", WebhookDelivery.__table__)


def fan_out(event: Event) -> None:
    """Create the deliveries of ``event`` and their jobs (idempotent by event id)."""
    fan_out_many([event])


def fan_out_many(events: Sequence[Event]) -> None:
    """Create the deliveries of ``events`` and their jobs (idempotent by event id)."""
    candidates = db.session.execute(
        sa.select(WebhookSubscription.event_type, WebhookEndpoint.id, WebhookEndpoint.owner_id)
        .join(WebhookEndpoint, WebhookSubscription.endpoint_id == WebhookEndpoint.id)
        .where(
            WebhookSubscription.event_type.in_({event.type for event in events}),
            WebhookEndpoint.disabled.is_(False),
        )
        .order_by(WebhookEndpoint.id)
    ).all()
    if not candidates:
        return
    endpoints_for: dict[str, list[tuple[str, str]]] = {}
    for event_type, endpoint_id, owner_id in candidates:
        endpoints_for.setdefault(event_type, []).append((endpoint_id, owner_id))
    done = {
        (event_id, endpoint_id)
        for event_id, endpoint_id in db.session.execute(
            sa.select(WebhookDelivery.event_id, WebhookDelivery.endpoint_id).where(
                WebhookDelivery.event_id.in_([event.id for event in events])
            )
        )
    }
    active: dict[str, bool] = {}
    rows: list[dict[str, Any]] = []
    batches: dict[str, list[dict[str, Any]]] = {}
    now = utcnow()
    for event in events:
        body: str | None = None
        for endpoint_id, owner_id in endpoints_for.get(event.type, ()):
            if (event.id, endpoint_id) in done or not event.visible_to(owner_id):
                continue
            if owner_id not in active:
                info = user_info(owner_id)
                active[owner_id] = info is not None and info.active
            if not active[owner_id]:
                continue
            body = body or body_of(event)
            delivery_id = new_id("msg")
            rows.append(
                {
                    "id": delivery_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "body": body,
                    "status": PENDING,
                    "series": 1,
                    "attempt_count": 0,
                    "created_at": now,
                }
            )
            batches.setdefault(endpoint_id, []).append(first_attempt(delivery_id, series=1))
    if not rows:
        return
    db.session.execute(_deliveries.insert(), rows)
    for attempts in batches.values():
        for start in range(0, len(attempts), DELIVER_BATCH):
            enqueue(DELIVER_TASK, attempts=attempts[start : start + DELIVER_BATCH])


HANDLERS = [EventHandler(FAN_OUT, ("*",), fan_out, handle_many=fan_out_many, batch=500)]
