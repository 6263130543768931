"""Request and response schemas of the projects API."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from mars_projects.models import MEMBER_ROLES, VISIBILITIES
from mars_server import plugin_settings
from mars_server.http import (
    PageArgsSchema,
    fields_param,
    page_schema,
    search_param,
    sort_param,
)
from mars_server.resources import update_schema

SLUG = ma.validate.Regexp(
    r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
    error="Use 1-64 lower-case letters, digits and inner hyphens.",
)


class ProjectSchema(ma.Schema):
    class Meta:
        ordered = True

    # Read-only fields are "required": in OpenAPI that binds responses only, which always
    # carry them.
    id = ma.fields.String(dump_only=True, metadata={"example": "prj_01jd2x6n7m4q8r9s0t1v2w3x4y"})
    slug = ma.fields.String(required=True, validate=SLUG)
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(load_default="")
    visibility = ma.fields.String(load_default="private", validate=ma.validate.OneOf(VISIBILITIES))
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    updated_at = ma.fields.AwareDateTime(dump_only=True, format="iso")

    @ma.validates("description")
    def _description_length(self, value: str, **kwargs: Any) -> None:
        limit = plugin_settings("projects")["description_max_length"]
        if len(value) > limit:
            raise ma.ValidationError(f"Longer than {limit} characters.")


ProjectUpdateSchema = update_schema(ProjectSchema)


class ProjectQueryArgsSchema(PageArgsSchema):
    visibility = ma.fields.String(
        validate=ma.validate.OneOf(VISIBILITIES),
        metadata={"description": "Only projects of this visibility."},
    )
    sort = sort_param("id", "name", "slug", "created_at", "updated_at", default="id")
    q = search_param("the name, slug and description")
    selected_fields = fields_param(ProjectSchema)


ProjectPageSchema = page_schema(ProjectSchema, "ProjectPage")


class ProjectsSettingsSchema(ma.Schema):
    description_max_length = ma.fields.Integer(
        load_default=10_000, validate=ma.validate.Range(min=1, max=1_000_000)
    )


class MemberSchema(ma.Schema):
    class Meta:
        ordered = True

    user_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(MEMBER_ROLES))
    added_at = ma.fields.AwareDateTime(dump_only=True, format="iso")


class MemberListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(MemberSchema), required=True)
