"""Request and response schemas of ``/api/v1/me/notifications`` and the plugin's settings."""

from __future__ import annotations

import marshmallow as ma

from mars_server.http import (
    PageArgsSchema,
    QueryBoolean,
    StrictBoolean,
    fields_param,
    page_schema,
    sort_param,
)


class NotificationSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True, metadata={"example": "ntf_01jd2x6n7m4q8r9s0t1v2w3x4y"})
    event_id = ma.fields.String(dump_only=True, metadata={"description": "The event it tells of."})
    event_type = ma.fields.String(dump_only=True, metadata={"example": "project.member_added"})
    title = ma.fields.String(dump_only=True)
    body = ma.fields.String(dump_only=True)
    link = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Where to look: an API path or an address; may be null."},
    )
    created_at = ma.fields.AwareDateTime(
        dump_only=True,
        format="iso",
        metadata={"description": "When what it tells of happened."},
    )
    read_at = ma.fields.AwareDateTime(
        dump_only=True,
        allow_none=True,
        format="iso",
        metadata={"description": "When you marked it read; null while unread."},
    )


class NotificationQueryArgsSchema(PageArgsSchema):
    unread = QueryBoolean(
        metadata={
            "description": "`true`: only unread notifications; `false`: only read ones; "
            "absent: all."
        }
    )
    sort = sort_param("id", default="-id")
    selected_fields = fields_param(NotificationSchema)


NotificationPageSchema = page_schema(NotificationSchema, "NotificationPage")


class UnreadCountSchema(ma.Schema):
    unread = ma.fields.Integer(
        required=True, metadata={"description": "How many of your notifications are unread."}
    )


class MarkedReadSchema(ma.Schema):
    marked = ma.fields.Integer(
        required=True, metadata={"description": "How many notifications this marked read."}
    )


class PreferenceSchema(ma.Schema):
    """One event type and the channels you get it on; PUT sends ``in_app`` and ``email``."""

    class Meta:
        ordered = True

    event_type = ma.fields.String(dump_only=True, metadata={"example": "project.member_added"})
    description = ma.fields.String(dump_only=True)
    in_app = StrictBoolean(
        required=True, metadata={"description": "Show it in your notifications."}
    )
    email = StrictBoolean(required=True, metadata={"description": "E-mail it to you."})


class PreferenceListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PreferenceSchema), required=True)


class NotificationsSettingsSchema(ma.Schema):
    retention_days = ma.fields.Integer(
        load_default=365,
        validate=ma.validate.Range(min=1, max=3650),
        metadata={"description": "Days a notification is kept, read or not."},
    )
    default_email = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Whether users who chose nothing get notifications by e-mail."},
    )
