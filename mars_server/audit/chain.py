"""The hash chain: sealing committed rows into it, and verifying it.

Writers never touch the chain: they insert unsealed rows in their own transactions, so
requests on any number of app servers never wait for one another. A sealer (the
``audit.seal`` task every few seconds, or ``mars audit seal``) takes the committed unsealed
rows in ``(occurred_at, id)`` order and gives each the next ``seq``, the hash of the row
before it (``prev_hash``) and its own ``hash``. Only one sealer works at a time: on
PostgreSQL it holds a transaction-scoped advisory lock, on SQLite the database's single
write lock, taken before it reads the head. The unique ``seq`` is the last line of defence:
two rows can never claim the same place, so the chain cannot fork.

A row's hash is SHA-256 over a canonical JSON document of its fields, its ``seq`` and the
previous row's hash included (:func:`canonical`); the first row's ``prev_hash`` is 64 zeros.
The personal fields (the address, user agent and details) are covered through a digest
(:func:`personal_digest`): SHA-256 over a random salt and the fields, the salt kept beside
them. Erasing a person (``erasure.py``) blanks the fields and the salt; the row keeps its
hash, which needs only the digest, so the chain still verifies, and the digest, without its
salt, cannot be tested against a guess of what was erased. Rows chained before MARS 0.4
have no digest and their hash covers the fields themselves; one of those that is erased
keeps its place in the chain, and what remains of it is checked against the fingerprint its
erasure recorded (:func:`fingerprint`). An erased row passes only when an erasure recorded
it: its actor or target is the erased person, or the erasure lists it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server.audit.models import AuditRecord
from mars_server.db import db

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: Rows sealed per transaction: the lock is held for a short while, and a backlog is
#: worked off by the task enqueueing itself again.
BATCH = 2000
#: ``pg_advisory_xact_lock`` key of the sealer ("mars_aud" as an integer).
LOCK_KEY = int.from_bytes(b"mars_aud", "big")
TABLE = cast("sa.Table", AuditRecord.__table__)


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def personal_digest(salt: str, row: Any) -> str:
    """SHA-256 over ``salt`` and the row's personal fields, canonical JSON."""
    fields = {"address": row.address, "user_agent": row.user_agent, "details": row.details}
    return hashlib.sha256(bytes.fromhex(salt) + _json(fields)).hexdigest()


def canonical(row: Any) -> bytes:
    """The bytes a row's hash is taken over: sorted-keys JSON, no spaces, ASCII only, the
    time in UTC with microseconds. ``row`` is a record or any object with its attributes.
    The personal fields count through ``personal_digest``, or themselves on rows chained
    before there was one."""
    document = {
        "id": row.id,
        "seq": row.seq,
        "prev_hash": row.prev_hash,
        "occurred_at": _utc(row.occurred_at),
        "actor_id": row.actor_id,
        "action": row.action,
        "target": row.target,
        "request_id": row.request_id,
    }
    if row.personal_digest is not None:
        document["personal_digest"] = row.personal_digest
    else:
        document |= {"address": row.address, "user_agent": row.user_agent, "details": row.details}
    return _json(document)


def row_hash(row: Any) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


# --- Sealing ------------------------------------------------------------------------------------


def lock() -> None:
    """Wait until no sealer is at work, and keep them out until the transaction ends (an
    erasure: a sealer must not digest a row it is blanking)."""
    _lock(wait=True)


def _lock(*, wait: bool) -> bool:
    """Become the only sealer until the transaction ends; ``False`` if another one is."""
    if db.session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = db.session.execute(sa.select(getattr(sa.func, function)(LOCK_KEY))).scalar()
        return wait or bool(got)
    # SQLite: a write that changes nothing takes the database's write lock now, before the
    # head is read; another sealer waits (busy timeout) and then reads the new head.
    db.session.execute(sa.update(TABLE).where(sa.false()).values(seq=TABLE.c.seq))
    return True


def head() -> tuple[int, str]:
    """``(seq, hash)`` of the last sealed row; ``(0, GENESIS)`` for an empty chain."""
    found = db.session.execute(
        sa.select(AuditRecord.seq, AuditRecord.hash)
        .where(AuditRecord.seq.is_not(None))
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).first()
    if found is None:
        return 0, GENESIS
    return int(found.seq), str(found.hash)


def seal(limit: int = BATCH, *, wait: bool = True) -> int:
    """Chain up to ``limit`` committed unsealed rows in the caller's transaction; return how
    many. With ``wait=False`` it returns 0 at once when another sealer is at work."""
    if not _lock(wait=wait):
        return 0
    seq, previous = head()
    rows = db.session.scalars(
        sa.select(AuditRecord)
        .where(AuditRecord.seq.is_(None))
        .order_by(AuditRecord.occurred_at, AuditRecord.id)
        .limit(limit)
    ).all()
    for row in rows:
        seq += 1
        row.seq = seq
        row.prev_hash = previous
        row.personal_salt = secrets.token_hex(16)
        row.personal_digest = personal_digest(row.personal_salt, row)
        row.hash = previous = row_hash(row)
    db.session.flush()
    if rows:
        _log_head_after_commit(len(rows), seq, previous)
    return len(rows)


_SEALED_HEAD = "mars_audit_sealed_head"


def _log_head_after_commit(count: int, seq: int, digest: str) -> None:
    """Log the new head once it is committed: logs shipped elsewhere are anchors for
    ``verify --anchor``, and must never name a head that was rolled back."""
    session = db.session()
    earlier = session.info.get(_SEALED_HEAD)
    session.info[_SEALED_HEAD] = (count + (earlier[0] if earlier else 0), seq, digest)
    if not sa.event.contains(session, "after_commit", _log_head):
        sa.event.listen(session, "after_commit", _log_head)
        sa.event.listen(session, "after_rollback", _forget_head)


def _log_head(session: Any) -> None:
    sealed = session.info.pop(_SEALED_HEAD, None)
    if sealed is not None:
        count, seq, digest = sealed
        log.info(
            "audit log: %d row(s) sealed; head seq %d hash %s",
            count,
            seq,
            digest,
            extra={"audit_head_seq": seq, "audit_head_hash": digest},
        )


def _forget_head(session: Any) -> None:
    session.info.pop(_SEALED_HEAD, None)


def seal_task() -> None:
    """The ``audit.seal`` task: one batch; a full batch enqueues the next one at once."""
    from mars_server.events import enqueue

    if seal(BATCH, wait=False) == BATCH:
        enqueue("audit.seal")


def unsealed_count(session: Session | None = None) -> int:
    return int(
        (session if session is not None else db.session()).scalar(
            sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.seq.is_(None))
        )
        or 0
    )


def oldest_unsealed() -> dt.datetime | None:
    return db.session.scalar(
        sa.select(sa.func.min(AuditRecord.occurred_at)).where(AuditRecord.seq.is_(None))
    )


# --- Verifying ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`verify` found: ``problem`` is ``None`` when the chain is intact."""

    sealed: int = 0
    unsealed: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problem: str | None = None
    bad_seq: int | None = None
    bad_id: str | None = None
    anchors_checked: list[int] = field(default_factory=list)
    #: rows whose personal fields were erased; of them, rows chained before digests (checked
    #: against their erasure's fingerprint, not their hash)
    erased: int = 0
    erased_unchecked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


#: The entry an erasure of the audit log's rows writes (``personal.py``): the person's id
#: (``subject``), the ids of the rows it erased because their details named the person
#: (``mentioned``), and the fingerprints of the rows it erased that were chained before
#: digests (``legacy``).
ERASED_ACTION = "audit.erased"


def fingerprint(row: Any) -> str:
    """SHA-256 over what a row keeps once its personal fields are erased."""
    kept = {
        "id": row.id,
        "seq": row.seq,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "occurred_at": _utc(row.occurred_at),
        "actor_id": row.actor_id,
        "action": row.action,
        "target": row.target,
        "request_id": row.request_id,
    }
    return hashlib.sha256(_json(kept)).hexdigest()


@dataclass
class _Erasures:
    """What the recorded erasures cover."""

    subjects: set[str] = field(default_factory=set)
    mentioned: set[str] = field(default_factory=set)
    legacy: dict[str, str] = field(default_factory=dict)

    def problem(self, row: Any) -> str | None:
        """Why ``row``'s erasure is not one MARS recorded; ``None`` when it is."""
        if not (
            row.actor_id in self.subjects or row.target in self.subjects or row.id in self.mentioned
        ):
            return "its personal fields are erased, but no erasure of it is recorded"
        if row.personal_digest is None and self.legacy.get(row.id) != fingerprint(row):
            return "it was changed after its personal fields were erased"
        return None


def _erasures(reader: Session) -> _Erasures:
    found = _Erasures()
    for details in reader.scalars(
        sa.select(AuditRecord.details).where(AuditRecord.action == ERASED_ACTION)
    ):
        if not isinstance(details, dict):
            continue
        if isinstance(details.get("subject"), str):
            found.subjects.add(details["subject"])
        found.mentioned.update(str(i) for i in details.get("mentioned") or ())
        legacy = details.get("legacy")
        if isinstance(legacy, dict):
            found.legacy.update({str(k): str(v) for k, v in legacy.items()})
    return found


def _first_broken(rows: Iterable[Any], verdict: Verdict, erasures: _Erasures) -> None:
    expected, previous = 1, GENESIS
    for row in rows:
        reasons: list[str] = []
        if row.seq < expected:
            reasons.append(f"its seq should be at least {expected} (inserted or renumbered)")
        elif row.seq > expected:
            first, last = expected, row.seq - 1
            missing = f"seq {first}" if first == last else f"seq {first} to {last}"
            reasons.append(f"{missing} missing before it (deleted)")
        if row.prev_hash != previous:
            reasons.append(
                "its prev_hash is not the hash of the row before it "
                "(a row inserted, deleted or moved)"
            )
        if row.erased_at is not None and row.personal_digest is None:
            # Chained before digests: its hash covered the erased fields; what remains is
            # checked against the fingerprint its erasure recorded (_Erasures.problem).
            verdict.erased_unchecked += 1
        elif row.hash != row_hash(row):
            reasons.append("its content does not match its hash (modified, or moved)")
        elif (
            row.personal_digest is not None
            and row.erased_at is None
            and (
                row.personal_salt is None
                or row.personal_digest != personal_digest(row.personal_salt, row)
            )
        ):
            reasons.append("its address, user agent or details were modified")
        if row.erased_at is not None:
            verdict.erased += 1
            problem = erasures.problem(row)
            if problem:
                reasons.append(problem)
        if reasons:
            verdict.problem = f"seq {row.seq} ({row.id}): " + "; ".join(reasons)
            verdict.bad_seq, verdict.bad_id = row.seq, row.id
            return
        verdict.sealed += 1
        verdict.head_seq, verdict.head_hash = row.seq, row.hash
        expected, previous = row.seq + 1, row.hash


def verify(anchors: dict[int, str] | None = None, session: Session | None = None) -> Verdict:
    """Recompute the whole chain; report the first row that breaks it.

    :param anchors: ``{seq: hash}`` recorded earlier (from ``mars audit verify`` output or
        the sealer's log): each must still be in the chain. This is what catches rows
        deleted from the end, or a chain rewritten from some row on.
    :param session: where to read the chain (a restored backup's); the app's database if
        ``None``.
    """
    reader = session if session is not None else db.session()
    verdict = Verdict(unsealed=unsealed_count(reader))
    rows = reader.execute(
        sa.select(TABLE).where(TABLE.c.seq.is_not(None)).order_by(TABLE.c.seq),
        execution_options={"yield_per": 1000},
    )
    try:
        _first_broken(rows, verdict, _erasures(reader))
    except (ValueError, TypeError, LookupError, sa.exc.StatementError) as error:
        # A value no writer of MARS could have stored (a date that is not one, details that
        # are not JSON): someone wrote it by hand.
        verdict.problem = (
            f"the row after seq {verdict.head_seq} cannot be read "
            f"({type(error).__name__}): modified"
        )
        verdict.bad_seq = verdict.head_seq + 1
    finally:
        rows.close()
    if verdict.problem is not None:
        return verdict
    forged = reader.execute(
        sa.select(AuditRecord.id)
        .where(
            AuditRecord.seq.is_(None),
            sa.or_(AuditRecord.hash.is_not(None), AuditRecord.prev_hash.is_not(None)),
        )
        .limit(1)
    ).scalar()
    if forged is not None:
        verdict.problem = f"{forged}: a hash but no place in the chain (not written by MARS)"
        verdict.bad_id = forged
        return verdict
    for seq, expected in sorted((anchors or {}).items()):
        found = reader.scalar(sa.select(AuditRecord.hash).where(AuditRecord.seq == seq))
        if found is None:
            verdict.problem = f"anchor seq {seq} is gone: rows were deleted from the end"
        elif found != expected:
            verdict.problem = f"anchor seq {seq} has another hash: the chain was rewritten"
        if verdict.problem:
            verdict.bad_seq = seq
            return verdict
        verdict.anchors_checked.append(seq)
    return verdict
