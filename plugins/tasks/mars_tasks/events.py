"""The events of tasks: their types and what they carry.

Services emit them through ``mars_server.resources`` in the transaction that makes the
change, so an event exists if and only if its change committed. Who hears of them is who
sees the task's project: everyone for a public project, its members for a private one.
"""

from __future__ import annotations

import marshmallow as ma

from mars_server.hookspecs import EventType
from mars_server.resources import event_schema
from mars_tasks.schemas import TaskSchema

CREATED = "task.created"
UPDATED = "task.updated"
DELETED = "task.deleted"
#: What a webhook subscription to these events needs: they show what tasks:read shows.
READ_SCOPE = "tasks:read"

TaskEventSchema = event_schema(TaskSchema)
TaskUpdatedEventSchema = event_schema(
    TaskSchema,
    name="TaskUpdatedEventSchema",
    doc="A task after a change, and which of its fields the change touched.",
    changed=ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={"description": 'The fields whose value changed, e.g. `["name"]`.'},
    ),
)

EVENT_TYPES = (
    EventType(CREATED, "A task was created.", TaskEventSchema, READ_SCOPE),
    EventType(UPDATED, "A task was changed.", TaskUpdatedEventSchema, READ_SCOPE),
    EventType(DELETED, "A task was deleted.", TaskEventSchema, READ_SCOPE),
)
