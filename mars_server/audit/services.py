"""Reading the audit log: the admin API's list and the operators' tail. No HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server.audit.models import AuditRecord
from mars_server.db import db
from mars_server.http import NotFound, Sort, paginate

if TYPE_CHECKING:
    import datetime as dt

    from mars_server.http import Page


def action_filter(action: str) -> sa.ColumnElement[bool]:
    """``project.created`` matches exactly; ``project.*`` (or ``project.``) every action
    that starts with ``project.``."""
    if action.endswith("*") or action.endswith("."):
        return AuditRecord.action.startswith(action.rstrip("*"), autoescape=True)
    return AuditRecord.action == action


def filtered(args: dict[str, Any]) -> sa.Select[AuditRecord]:
    stmt = sa.select(AuditRecord)
    if args.get("actor"):
        stmt = stmt.where(AuditRecord.actor_id == args["actor"])
    if args.get("target"):
        stmt = stmt.where(AuditRecord.target == args["target"])
    if args.get("action"):
        stmt = stmt.where(action_filter(args["action"]))
    if args.get("since"):
        stmt = stmt.where(AuditRecord.occurred_at >= args["since"])
    if args.get("until"):
        stmt = stmt.where(AuditRecord.occurred_at < args["until"])
    return stmt


#: The order of the log: its ids, which are time-ordered (``-id``: newest first).
BY_ID = Sort({}, default="id")


def list_records(args: dict[str, Any]) -> Page[AuditRecord]:
    """One page of entries matching ``args``' filters, oldest first (ids are time-ordered),
    or newest first (``sort=-id``)."""
    return paginate(filtered(args), AuditRecord.id, args, name="audit", sort=BY_ID)


def get_record(record_id: str) -> AuditRecord:
    record = db.session.get(AuditRecord, record_id)
    if record is None:
        raise NotFound(f"No audit entry {record_id!r}.")
    return record


def newest(count: int, args: dict[str, Any] | None = None) -> list[AuditRecord]:
    """The ``count`` most recent entries (matching ``args``), oldest of them first."""
    stmt = filtered(args or {}).order_by(AuditRecord.occurred_at.desc(), AuditRecord.id.desc())
    return list(reversed(db.session.scalars(stmt.limit(count)).all()))


def recent(since: dt.datetime, args: dict[str, Any] | None = None) -> list[AuditRecord]:
    """Entries that occurred at or after ``since``, in order (for following the log)."""
    stmt = filtered(args or {}).where(AuditRecord.occurred_at >= since)
    return list(db.session.scalars(stmt.order_by(AuditRecord.occurred_at, AuditRecord.id)))
