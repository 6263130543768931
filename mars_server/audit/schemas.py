"""Schemas of the audit log API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma

from mars_server.audit.models import ACTION_LENGTH, ACTOR_LENGTH, TARGET_LENGTH
from mars_server.http import PageArgsSchema, fields_param, page_schema, sort_param


class AuditRecordSchema(ma.Schema):
    id = ma.fields.String(dump_only=True)
    occurred_at = ma.fields.AwareDateTime(dump_only=True)
    actor_id = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The user or OAuth client that acted; `cli:<login>` for an "
            "operator's command; null when anonymous."
        },
    )
    action = ma.fields.String(
        dump_only=True,
        metadata={"description": "An event type (`project.created`) or a security event."},
    )
    target = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The public id of what it happened to."},
    )
    address = ma.fields.String(dump_only=True, allow_none=True)
    user_agent = ma.fields.String(dump_only=True, allow_none=True)
    request_id = ma.fields.String(dump_only=True, allow_none=True)
    details = ma.fields.Dict(
        keys=ma.fields.String(),
        dump_only=True,
        metadata={"description": "What else matters; secrets are never recorded."},
    )
    seq = ma.fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Place in the hash chain; null until sealed (seconds)."},
    )
    prev_hash = ma.fields.String(dump_only=True, allow_none=True)
    hash = ma.fields.String(dump_only=True, allow_none=True)


class AuditQueryArgsSchema(PageArgsSchema):
    actor = ma.fields.String(
        validate=ma.validate.Length(min=1, max=ACTOR_LENGTH),
        metadata={"description": "Only entries of this actor id."},
    )
    target = ma.fields.String(
        validate=ma.validate.Length(min=1, max=TARGET_LENGTH),
        metadata={"description": "Only entries about this id."},
    )
    action = ma.fields.String(
        validate=ma.validate.Length(min=1, max=ACTION_LENGTH + 1),
        metadata={
            "description": "Only this action; end it with `*` (`project.*`) for every action "
            "that starts with what comes before."
        },
    )
    since = ma.fields.AwareDateTime(
        metadata={"description": "Only entries that occurred at or after this time."}
    )
    until = ma.fields.AwareDateTime(
        metadata={"description": "Only entries that occurred before this time."}
    )

    @ma.validates("since", "until")
    def _representable(self, value: dt.datetime, data_key: str, **_kwargs: Any) -> None:
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            raise ma.ValidationError("Out of range.") from None

    @ma.validates_schema
    def _window(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("since") and data.get("until") and data["until"] <= data["since"]:
            raise ma.ValidationError("Must be after `since`.", field_name="until")

    sort = sort_param("id", default="id")
    selected_fields = fields_param(AuditRecordSchema)


AuditPageSchema = page_schema(AuditRecordSchema, name="AuditPage")
