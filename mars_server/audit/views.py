"""``/api/v1/audit``: the audit log, for admins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.views import MethodView

from mars_server.audit import services
from mars_server.audit.schemas import AuditPageSchema, AuditQueryArgsSchema, AuditRecordSchema
from mars_server.http import Blueprint, send_page

if TYPE_CHECKING:
    from mars_server.audit.models import AuditRecord

blp = Blueprint(
    "audit",
    __name__,
    url_prefix="/audit",
    description="The audit log (admins): every change and security event, hash-chained.",
)


@blp.route("")
class AuditRecords(MethodView):
    @blp.requires("audit:read", permission="audit:read")
    @blp.doc(operationId="list_audit_records", **{"x-mars-sdk-method": "list"})
    @blp.arguments(AuditQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, AuditPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List audit entries, oldest first; filter by actor, target, action and time

        Needs `audit:read` and the admin role. Returns a page of entries: filter with `actor`,
        `target`, `action` (end it with `*` to match a prefix) and `since`/`until`, and follow
        `next_cursor` or the `Link` header for the next page.
        """
        return send_page(services.list_records(args))


@blp.route("/<string:record_id>")
class AuditRecordById(MethodView):
    @blp.requires("audit:read", permission="audit:read")
    @blp.doc(operationId="get_audit_record", **{"x-mars-sdk-method": "get"})
    @blp.response(200, AuditRecordSchema)
    def get(self, record_id: str) -> AuditRecord:
        """Get one audit entry, with its place in the hash chain

        Needs `audit:read` and the admin role. Returns the entry with `seq`, `prev_hash` and `hash`,
        which stay null for the few seconds until the entry is sealed into the chain; an unknown id
        is 404.
        """
        return services.get_record(record_id)
