"""Request and response schemas of the tasks API."""

from __future__ import annotations

import marshmallow as ma

from mars_server.http import PageArgsSchema, QueryBoolean, page_schema
from mars_server.resources import update_schema


class TaskSchema(ma.Schema):
    """A task of a project: what POST takes and every answer shows."""

    # Read-only fields are "required": in OpenAPI that binds responses only, which always
    # carry them.
    id = ma.fields.String(dump_only=True, metadata={"example": "tsk_01jd2x6n7m4q8r9s0t1v2w3x4y"})
    project_id = ma.fields.String(dump_only=True)
    created_by = ma.fields.String(dump_only=True, metadata={"description": "The user's id."})
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=10_000))
    done = ma.fields.Boolean(load_default=False)
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    updated_at = ma.fields.AwareDateTime(dump_only=True, format="iso")


#: PATCH: the same fields, each optional (mars_server.resources).
TaskUpdateSchema = update_schema(TaskSchema)


class TaskQueryArgsSchema(PageArgsSchema):
    done = QueryBoolean(metadata={"description": "Only the tasks done (true) or to do (false)."})


TaskPageSchema = page_schema(TaskSchema, "TaskPage")
