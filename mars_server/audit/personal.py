"""The audit log's part in a person's export and erasure (docs/privacy.md).

An entry is the person's when they acted (``actor_id``), when it is about their account
(``target``), or when its details name their id. Erasure blanks the entry's personal fields
(address, user agent, details) and its digest's salt; its place in the chain, its time,
action and ids stay, and ``mars audit verify`` still passes (``chain.py``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_server.audit.models import AuditRecord
from mars_server.db import db, utcnow
from mars_server.hookspecs import PersonalData

INVENTORY = [
    PersonalData(
        what="what a person did and what was done to their account: the action, its time, "
        "the IP address and user agent of the request, and the details of the change",
        where="mars_audit_log (actor_id, target, address, user_agent, details)",
        why="security and accountability: to answer who did what, and to detect tampering",
        kept="for as long as the audit log (no automatic deletion: docs/audit.md#retention)",
        erasure="address, user agent and details removed; the entry keeps its place in the "
        "hash chain, its time, action and the person's id, which then names nobody",
    )
]


def _theirs(user_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(
        AuditRecord.actor_id == user_id,
        AuditRecord.target == user_id,
        sa.cast(AuditRecord.details, sa.Text).contains(f'"{user_id}"', autoescape=True),
    )


def export(user_id: str) -> dict[str, Any]:
    rows = db.session.scalars(
        sa.select(AuditRecord).where(_theirs(user_id)).order_by(AuditRecord.occurred_at)
    )
    entries = [
        {
            "occurred_at": row.occurred_at,
            "action": row.action,
            "actor_id": row.actor_id,
            "target": row.target,
            "address": row.address,
            "user_agent": row.user_agent,
            "details": row.details,
        }
        for row in rows
    ]
    return {"audit_entries": entries} if entries else {}


def erase(user_id: str) -> list[str]:
    result = db.session.execute(
        sa.update(AuditRecord)
        .where(_theirs(user_id), AuditRecord.erased_at.is_(None))
        .values(address=None, user_agent=None, details={}, personal_salt=None, erased_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    return [f"{count} audit entries' address, user agent and details erased"] if count else []
