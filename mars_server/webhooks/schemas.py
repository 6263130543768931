"""Settings, request and response schemas of the webhooks plugin."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from mars_server.http import (
    SECRET,
    PageArgsSchema,
    StrictBoolean,
    fields_param,
    page_schema,
    sort_param,
)
from mars_server.state import mars_state
from mars_server.webhooks.guard import url_problem
from mars_server.webhooks.models import DELIVERY_STATUSES, DISABLED_REASONS

ID_EXAMPLE = "whk_01jd2x6n7m4q8r9s0t1v2w3x4y"


class WebhooksSettingsSchema(ma.Schema):
    """``MARS_WEBHOOKS__<KEY>``, or ``[plugins.webhooks]`` in the config file."""

    #: Seconds one attempt may take in all: connecting, sending, and reading the answer.
    #: Never more than 15: a slow receiver must not hold a worker's thread longer.
    timeout_seconds = ma.fields.Float(
        load_default=15.0, validate=ma.validate.Range(min=0, max=15, min_inclusive=False)
    )
    #: How much of an answer is read; a longer one is cut and its connection closed.
    max_response_bytes = ma.fields.Integer(
        load_default=65536, validate=ma.validate.Range(min=0, max=16 * 1024 * 1024)
    )
    #: How long a rotated-out secret still signs deliveries, beside the new one.
    secret_grace_hours = ma.fields.Float(
        load_default=24.0, validate=ma.validate.Range(min=0, max=24 * 30)
    )
    #: An endpoint failing without a single success for longer than this is disabled.
    disable_after_days = ma.fields.Float(
        load_default=5.0, validate=ma.validate.Range(min=0, max=365)
    )
    #: Finished deliveries (and their attempts) are deleted after this many days.
    log_retention_days = ma.fields.Integer(
        load_default=30, validate=ma.validate.Range(min=1, max=3650)
    )


def _declared_event_types() -> dict[str, Any]:
    return mars_state().event_types


class WebhookSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True, metadata={"example": ID_EXAMPLE})
    url = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=2048),
        metadata={
            "description": "Where deliveries are POSTed: http:// or https://, no credentials; "
            "private and loopback addresses are refused unless the server allows them.",
            "example": "https://example.com/hooks/mars",
        },
    )
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))
    events = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=100)),
        required=True,
        validate=ma.validate.Length(min=1, max=100),
        metadata={
            "description": "The event types to receive (see the OpenAPI `webhooks` section).",
            "example": ["project.created"],
        },
    )
    disabled = StrictBoolean(
        load_default=False,
        metadata={"description": "No deliveries while true; set it back to false to resume."},
    )
    disabled_reason = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "enum": [*DISABLED_REASONS, None],
            "description": "`by_owner`, `gone` (it answered 410) or `failing` (every delivery "
            "failed for too long); null while enabled.",
        },
    )
    disabled_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True, format="iso")
    failing_since = ma.fields.AwareDateTime(
        dump_only=True,
        allow_none=True,
        format="iso",
        metadata={"description": "Since when every attempt has failed; null after a success."},
    )
    previous_secret_expires_at = ma.fields.AwareDateTime(
        dump_only=True,
        allow_none=True,
        format="iso",
        metadata={
            "description": "Until then, deliveries are also signed with the secret before the "
            "last rotation."
        },
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    updated_at = ma.fields.AwareDateTime(dump_only=True, format="iso")

    @ma.validates("url")
    def _url_is_deliverable(self, value: str, **kwargs: Any) -> None:
        allow = current_app.config["MARS"]["WEBHOOKS_ALLOW_PRIVATE"]
        problem = url_problem(value, allow_private=allow)
        if problem:
            raise ma.ValidationError(problem)

    @ma.validates("events")
    def _events_are_declared(self, value: list[str], **kwargs: Any) -> None:
        declared = _declared_event_types()
        unknown = {
            index: [f"No event type {name!r}; see the OpenAPI document's webhooks section."]
            for index, name in enumerate(value)
            if name not in declared
        }
        if unknown:
            raise ma.ValidationError(unknown)


class WebhookUpdateSchema(WebhookSchema):
    """PATCH: every field optional, and no defaults."""

    class Meta:
        ordered = True

    description = ma.fields.String(validate=ma.validate.Length(max=500))
    disabled = StrictBoolean(
        metadata={"description": "No deliveries while true; set it back to false to resume."}
    )


class NewSecretSchema(WebhookSchema):
    """An endpoint with its signing secret, shown this once."""

    class Meta:
        ordered = True

    secret = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The signing secret (`whsec_` + base64). It is shown only now: "
            "keep it in your receiver's configuration.",
            "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            SECRET: True,
        },
    )


class WebhookQueryArgsSchema(PageArgsSchema):
    sort = sort_param("id", default="id")
    selected_fields = fields_param(WebhookSchema)


WebhookPageSchema = page_schema(WebhookSchema, "WebhookPage")


class AttemptSchema(ma.Schema):
    class Meta:
        ordered = True

    attempted_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    series = ma.fields.Integer(
        dump_only=True,
        metadata={"description": "1 for the first series of attempts, 2 after a redelivery..."},
    )
    response_status = ma.fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The receiver's HTTP status; null when none came."},
    )
    duration_ms = ma.fields.Integer(dump_only=True)
    error = ma.fields.String(dump_only=True, allow_none=True)
    response_body = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The start of the receiver's answer (1 KiB at most)."},
    )


class DeliverySchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The `webhook-id` header: the same on every attempt and redelivery.",
            "example": "msg_01jd2x6n7m4q8r9s0t1v2w3x4y",
        },
    )
    event_id = ma.fields.String(dump_only=True)
    event_type = ma.fields.String(dump_only=True)
    status = ma.fields.String(dump_only=True, metadata={"enum": list(DELIVERY_STATUSES)})
    attempt_count = ma.fields.Integer(dump_only=True)
    last_attempt_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True, format="iso")
    response_status = ma.fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The last attempt's HTTP status; null when none came."},
    )
    duration_ms = ma.fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "How long the last attempt took."},
    )
    error = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Why the last attempt failed."},
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    completed_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True, format="iso")
    operation_id = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The long-running operation of the latest redelivery "
            "(`GET /api/v1/operations/{id}`; the SDK's `client.wait`): it ends when that "
            "series of attempts does. Null until the delivery is redelivered.",
        },
    )


class DeliveryDetailSchema(DeliverySchema):
    """A delivery with what it sent and each of its attempts."""

    class Meta:
        ordered = True

    body = ma.fields.Dict(
        dump_only=True,
        attribute="document",
        metadata={"description": "The JSON body sent: `id`, `type`, `timestamp`, `data`."},
    )
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema), dump_only=True)


class DeliveryQueryArgsSchema(PageArgsSchema):
    status = ma.fields.String(
        validate=ma.validate.OneOf(DELIVERY_STATUSES),
        metadata={"description": "Only deliveries in this state."},
    )
    sort = sort_param("id", default="id")
    selected_fields = fields_param(DeliverySchema)


DeliveryPageSchema = page_schema(DeliverySchema, "WebhookDeliveryPage")
