"""The OpenAPI document's ``webhooks`` section: every declared event type, as its subscribers
receive it (OpenAPI 3.1). The plugin's ``mars_openapi`` adds it: without the plugin, nobody
receives webhooks, and the document says none."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import marshmallow as ma

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apispec import APISpec

    from mars_server.hookspecs import EventType

SIGNATURE_HEADERS = {
    "webhook-id": "The delivery's id: the same in every retry of it; use it to drop duplicates.",
    "webhook-timestamp": "When this attempt was signed, in seconds since the Unix epoch.",
    "webhook-signature": (
        "Space-separated `v1,<base64 HMAC-SHA256>` signatures of `{id}.{timestamp}.{body}` "
        "(Standard Webhooks); two during a secret rotation."
    ),
}

#: the tag of the OpenAPI ``webhooks`` entries
EVENTS_TAG = "webhook-events"


def component_name(event_type: str) -> str:
    return "Webhook" + "".join(part.capitalize() for part in re.split(r"[._-]", event_type))


def envelope_schema(event_type: EventType) -> type[ma.Schema]:
    """The body of a delivery of ``event_type``: ``{id, type, timestamp, data}``."""
    return type(
        component_name(event_type.name),
        (ma.Schema,),
        {
            "id": ma.fields.String(
                required=True, metadata={"description": "The event's id (`evt_...`)."}
            ),
            "type": ma.fields.String(required=True, metadata={"enum": [event_type.name]}),
            "timestamp": ma.fields.AwareDateTime(
                required=True, metadata={"description": "When it happened."}
            ),
            "data": ma.fields.Nested(event_type.payload, required=True),
        },
    )


def document_webhooks(spec: APISpec, event_types: Mapping[str, EventType]) -> None:
    """Add the ``webhooks`` section to ``spec``: one entry per event type, with its envelope
    schema as a component; nothing when no event type is declared."""
    webhooks: dict[str, Any] = {}
    for name in sorted(event_types):
        event_type = event_types[name]
        component = component_name(name)
        spec.components.schema(component, schema=envelope_schema(event_type))
        webhooks[name] = {
            "post": {
                "summary": event_type.description,
                "description": "MARS POSTs this to the endpoints subscribed to "
                f"`{name}`, signed: check the `webhook-signature` header with the "
                "endpoint's secret before you trust the body."
                + (
                    f" Subscribing to it needs a token with the scope `{event_type.scope}`."
                    if event_type.scope
                    else ""
                ),
                **({"x-mars-scope": event_type.scope} if event_type.scope else {}),
                # No credential of the caller's: the signature headers vouch for MARS.
                "security": [],
                "operationId": "webhook_" + re.sub(r"[^a-z0-9]+", "_", name.lower()),
                # A tag of their own: generators that write a module per tag must not put
                # them with the operations that manage webhook endpoints (tag "webhooks").
                "tags": [EVENTS_TAG],
                "parameters": [
                    {
                        "name": header,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": description,
                    }
                    for header, description in SIGNATURE_HEADERS.items()
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{component}"}
                        }
                    },
                },
                "responses": {
                    "2XX": {"description": "Received. Any other answer is retried later."},
                    "410": {"description": "Gone: MARS disables the subscription."},
                },
            }
        }
    if webhooks:
        spec.options["webhooks"] = webhooks
        spec.tag(
            {
                "name": EVENTS_TAG,
                "description": "What MARS sends to your webhook endpoints: one signed POST "
                "per event (docs/webhooks.md).",
            }
        )
