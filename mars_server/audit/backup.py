"""What a backup notes about the audit log (its chain's head), and checks in a restored copy:
the chain verifies, and still holds the recorded head."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mars_server.audit import chain
from mars_server.hookspecs import BackupCheck, BackupCheckFailed

if TYPE_CHECKING:
    from sqlalchemy import Connection

_DIGEST = re.compile(r"[0-9a-f]{64}")


def record(connection: Connection) -> dict[str, Any]:
    """The chain's head in the backed-up snapshot."""
    found = connection.execute(
        sa.select(chain.TABLE.c.seq, chain.TABLE.c.hash)
        .where(chain.TABLE.c.seq.is_not(None))
        .order_by(chain.TABLE.c.seq.desc())
        .limit(1)
    ).first()
    if found is None:
        return {"head_seq": 0, "head_hash": chain.GENESIS}
    return {"head_seq": int(found.seq), "head_hash": str(found.hash)}


def verify(connection: Connection, facts: dict[str, Any]) -> str:
    """Recompute the restored chain, anchored at the head the manifest recorded."""
    seq, digest = facts.get("head_seq"), facts.get("head_hash")
    if not (isinstance(seq, int) and seq >= 0 and isinstance(digest, str)):
        raise BackupCheckFailed("the manifest's audit head is malformed")
    if not _DIGEST.fullmatch(digest):
        raise BackupCheckFailed("the manifest's audit head is malformed")
    with Session(bind=connection) as session:
        verdict = chain.verify({seq: digest} if seq else {}, session=session)
    if not verdict.ok:
        raise BackupCheckFailed(f"audit log broken: {verdict.problem}")
    return f"audit chain intact, head {seq}:{digest[:12]}… found ({verdict.sealed} sealed rows)"


CHECK = BackupCheck(name="audit", record=record, verify=verify)
