"""The audit log's part in a person's export and erasure (docs/privacy.md).

An entry is the person's when they acted (``actor_id``), when it is about their account
(``target``), or, for erasure, when its details name their id (a token an operator made for
them). Erasure blanks the entry's personal fields (address, user agent, details) and its
digest's salt; its place in the chain, its time, action and ids stay, and ``mars audit
verify`` still passes (``chain.py``). The export gives the address and user agent only of
the person's own actions.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from mars_server.audit import chain
from mars_server.audit.models import AuditRecord
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.hookspecs import PersonalData

log = logging.getLogger(__name__)

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


def _subject(user_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(AuditRecord.actor_id == user_id, AuditRecord.target == user_id)


def _mentions(user_id: str) -> sa.ColumnElement[bool]:
    return sa.cast(AuditRecord.details, sa.Text).contains(f'"{user_id}"', autoescape=True)


def export(user_id: str) -> dict[str, Any]:
    """The entries of what the person did and what was done to their account. The address
    and user agent only of what they did: those of others' actions are the others'."""
    rows = db.session.scalars(
        sa.select(AuditRecord).where(_subject(user_id)).order_by(AuditRecord.occurred_at)
    )
    entries = []
    for row in rows:
        entry = {
            "occurred_at": row.occurred_at,
            "action": row.action,
            "actor_id": row.actor_id,
            "target": row.target,
            "details": row.details,
        }
        if row.actor_id == user_id:
            entry |= {"address": row.address, "user_agent": row.user_agent}
        entries.append(entry)
    return {"audit_entries": entries} if entries else {}


def erase(user_id: str) -> list[str]:
    """Blank the personal fields of the person's entries, and record which ones in an
    ``audit.erased`` entry that ``mars audit verify`` checks every erased row against."""
    chain.lock()  # no sealer digests a row between its read and this erasure
    pending = sa.and_(
        AuditRecord.erased_at.is_(None), sa.or_(_subject(user_id), _mentions(user_id))
    )
    mentioned: list[str] = []
    legacy: dict[str, str] = {}
    for row in db.session.scalars(sa.select(AuditRecord).where(pending)):
        if row.actor_id != user_id and row.target != user_id:
            mentioned.append(row.id)
        if row.seq is not None and row.personal_digest is None:
            if row.hash != chain.row_hash(row):
                # Already altered: erasing it would hide that; `mars audit verify` reports it.
                log.warning("audit: %s does not match its hash; left as it is", row.id)
                continue
            legacy[row.id] = chain.fingerprint(row)
    ids = [*legacy, *mentioned]
    result = db.session.execute(
        sa.update(AuditRecord)
        .where(
            pending,
            sa.or_(
                AuditRecord.personal_digest.is_not(None),
                AuditRecord.seq.is_(None),
                AuditRecord.id.in_(list(legacy)),
            ),
        )
        .values(address=None, user_agent=None, details={}, personal_salt=None, erased_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count or ids:
        audit(
            chain.ERASED_ACTION, target=user_id, subject=user_id, mentioned=mentioned, legacy=legacy
        )
    return [f"{count} audit entries' address, user agent and details erased"] if count else []
