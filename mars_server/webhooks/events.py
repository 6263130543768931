"""The events of webhooks: their types, what they carry, emitting them, and who is told.

``webhook.endpoint_disabled`` is emitted in the transaction that disables an endpoint (it
answered 410 Gone, or kept failing), to its owner alone; the notifications plugin tells the
owner through :func:`notifications`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import marshmallow as ma

from mars_server.events import emit
from mars_server.hookspecs import EventType, NotificationDraft
from mars_server.webhooks.models import FAILING, GONE

if TYPE_CHECKING:
    import datetime as dt

    from mars_server.events import Event

ENDPOINT_DISABLED = "webhook.endpoint_disabled"


class EndpointDisabledSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(required=True, metadata={"description": "The endpoint's id."})
    url = ma.fields.String(required=True)
    reason = ma.fields.String(
        required=True,
        metadata={
            "enum": [GONE, FAILING],
            "description": "`gone`: it answered 410 Gone; `failing`: no delivery succeeded "
            "for longer than the server allows.",
        },
    )
    failing_since = ma.fields.AwareDateTime(required=True, allow_none=True, format="iso")
    disabled_at = ma.fields.AwareDateTime(required=True, format="iso")


EVENT_TYPES = [
    EventType(
        ENDPOINT_DISABLED,
        "One of your webhook endpoints was disabled: it answered 410 Gone, or kept failing.",
        EndpointDisabledSchema,
        "webhooks:read",
    )
]


def endpoint_disabled(
    *,
    endpoint_id: str,
    url: str,
    owner_id: str,
    reason: str,
    failing_since: dt.datetime | None,
    disabled_at: dt.datetime,
) -> None:
    """Emit ``webhook.endpoint_disabled`` to the endpoint's owner, in the caller's transaction."""
    emit(
        ENDPOINT_DISABLED,
        {
            "id": endpoint_id,
            "url": url,
            "reason": reason,
            "failing_since": failing_since,
            "disabled_at": disabled_at,
        },
        audience=[owner_id],
        target=endpoint_id,
    )


def notifications(event: Event) -> list[NotificationDraft]:
    """Tell an endpoint's owner it was disabled."""
    if event.type != ENDPOINT_DISABLED:
        return []
    payload = event.payload
    if payload.get("reason") == GONE:
        body = (
            f"{payload['url']} answered 410 Gone, so MARS stopped sending it events. "
            "Enable the endpoint again once it accepts deliveries."
        )
    else:
        body = (
            f"Every delivery to {payload['url']} has failed since {payload.get('failing_since')}, "
            "so MARS stopped sending it events. Fix the receiver, then enable the endpoint "
            "again and redeliver what it missed from its delivery log."
        )
    return [
        NotificationDraft(
            user_id=user_id,
            title="A webhook endpoint was disabled",
            body=body,
            link=f"/api/v1/webhooks/{payload['id']}",
        )
        for user_id in event.audience or ()
    ]
