"""``GET /api/v1/operations/{id}``: where a long-running operation stands."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from mars_server import operations
from mars_server.http import Blueprint, current_actor
from mars_server.ops.models import OPERATION_STATUSES, Operation

blp = Blueprint(
    "operations",
    __name__,
    url_prefix="/operations",
    description="Work that outlives its request: what a 202 answer's Location points to.",
)


class LongRunningOperationSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True, metadata={"example": "op_01jd2x6n7m4q8r9s0t1v2w3x4y"})
    kind = ma.fields.String(
        dump_only=True, metadata={"description": "What it does, e.g. `account.export`."}
    )
    status = ma.fields.String(
        dump_only=True,
        metadata={
            "enum": list(OPERATION_STATUSES),
            "description": "`pending`, `running`, then `succeeded` (see `result`) or `failed` "
            "(see `error`).",
        },
    )
    progress = ma.fields.Float(
        dump_only=True,
        allow_none=True,
        metadata={"description": "How far the work is, from 0 to 1, when it says."},
    )
    result = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Once it succeeded: the path of its result in the API."},
    )
    error = ma.fields.Dict(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Once it failed: what went wrong, an RFC 9457 problem."},
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    updated_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    finished_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)


@blp.route("/<string:operation_id>")
class OperationById(MethodView):
    @blp.requires()
    @blp.doc(
        operationId="get_operation",
        description="Poll it until `status` is `succeeded` or `failed` (the SDK's "
        "`client.wait(operation)` does); only whoever started it sees it.",
    )
    @blp.response(200, LongRunningOperationSchema)
    def get(self, operation_id: str) -> Operation:
        """Show where an operation stands"""
        actor = current_actor()
        return operations.get_for(actor.id if actor else None, operation_id)
