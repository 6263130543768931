"""The webhooks' part in a person's export and erasure (docs/privacy.md): their endpoints and
delivery logs. Deliveries to other people's endpoints are those people's records (their
payloads hold ids, never an e-mail address or a name) and stay."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_server.db import db
from mars_server.events import audit
from mars_server.hookspecs import PersonalData
from mars_server.webhooks.models import WebhookDelivery, WebhookEndpoint

INVENTORY = [
    PersonalData(
        what="the person's webhook endpoints (URL, description, events) and their delivery "
        "logs (payloads, the receiver's answers)",
        where="webhook_endpoints, webhook_subscriptions, webhook_deliveries, webhook_attempts",
        why="to deliver the events the person subscribed to, and show them how it went",
        kept="endpoints until deleted; delivery logs as the webhooks plugin's retention says",
        erasure="deleted with their delivery logs",
    )
]

#: The newest deliveries of each endpoint in an export.
DELIVERIES = 1000


def export(user_id: str) -> dict[str, Any]:
    endpoints = []
    for endpoint in db.session.scalars(
        sa.select(WebhookEndpoint).where(WebhookEndpoint.owner_id == user_id)
    ):
        deliveries = db.session.scalars(
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.created_at.desc())
            .limit(DELIVERIES)
        )
        endpoints.append(
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "description": endpoint.description,
                "events": endpoint.events,
                "disabled": endpoint.disabled,
                "created_at": endpoint.created_at,
                "signing_secret": "exists (never exported)",
                "deliveries": [
                    {
                        "id": d.id,
                        "event_type": d.event_type,
                        "status": d.status,
                        "created_at": d.created_at,
                    }
                    for d in deliveries
                ],
            }
        )
    return {"endpoints": endpoints} if endpoints else {}


def erase(user_id: str) -> list[str]:
    endpoints = list(
        db.session.scalars(sa.select(WebhookEndpoint).where(WebhookEndpoint.owner_id == user_id))
    )
    for endpoint in endpoints:
        audit("webhooks.endpoint_deleted", target=endpoint.id, reason="account_erased")
        db.session.delete(endpoint)
    db.session.flush()
    return (
        [f"{len(endpoints)} webhook endpoints deleted with their deliveries"] if endpoints else []
    )
