"""Schemas of the jobs admin API."""

from __future__ import annotations

import marshmallow as ma

from mars_server.events.models import JOB_STATUSES
from mars_server.http import PageArgsSchema, page_schema


class JobSchema(ma.Schema):
    id = ma.fields.String(dump_only=True)
    task = ma.fields.String(dump_only=True)
    status = ma.fields.String(dump_only=True, metadata={"enum": list(JOB_STATUSES)})
    attempts = ma.fields.Integer(dump_only=True)
    max_attempts = ma.fields.Integer(dump_only=True)
    run_at = ma.fields.AwareDateTime(
        dump_only=True, metadata={"description": "When it is due, or when its lease ends."}
    )
    created_at = ma.fields.AwareDateTime(dump_only=True)
    finished_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    last_error = ma.fields.String(dump_only=True, allow_none=True)


class JobQueryArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(JOB_STATUSES))
    task = ma.fields.String(validate=ma.validate.Length(max=100))


JobPageSchema = page_schema(JobSchema, name="JobPage")
