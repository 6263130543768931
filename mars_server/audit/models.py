"""The audit log table: one append-only row per state change or security event."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model

#: Column widths; what an entry brings is clipped to them rather than failing the caller.
ACTOR_LENGTH = 200
ACTION_LENGTH = 100
TARGET_LENGTH = 200
ADDRESS_LENGTH = 100
USER_AGENT_LENGTH = 500
REQUEST_ID_LENGTH = 128


class AuditRecord(Model):
    """Who did what, to what, from where, when.

    ``actor_id`` and ``target`` are ids, which name nobody once an account is erased; the
    personal fields are erasable without breaking the chain (``personal_digest``).

    Rows are written *unsealed* (``seq``, ``prev_hash`` and ``hash`` empty) in the
    transaction of the change they describe, so writers never wait for one another. The
    ``audit.seal`` task then chains committed rows, in ``(occurred_at, id)`` order, one
    sealer at a time: ``seq`` is the row's place in the chain, ``prev_hash`` the hash of the
    row before it and ``hash`` a SHA-256 over both and every other field (see ``chain.py``).
    """

    __tablename__ = "mars_audit_log"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    occurred_at: Mapped[dt.datetime]
    #: a user's or OAuth client's id, ``cli:<login>`` for operators, ``None`` if anonymous.
    actor_id: Mapped[str | None] = mapped_column(sa.String(ACTOR_LENGTH), info={"user_id": True})
    action: Mapped[str] = mapped_column(sa.String(ACTION_LENGTH))
    target: Mapped[str | None] = mapped_column(sa.String(TARGET_LENGTH))
    address: Mapped[str | None] = mapped_column(sa.String(ADDRESS_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(sa.String(USER_AGENT_LENGTH))
    request_id: Mapped[str | None] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    seq: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64))
    #: The personal fields (``address``, ``user_agent``, ``details``) enter the chain only
    #: through this digest, SHA-256 over a random salt and them: erasing a person blanks the
    #: fields and the salt, and the chain still verifies (``chain.py``). ``None`` on rows
    #: chained before MARS 0.4, whose hash covers the fields themselves.
    personal_salt: Mapped[str | None] = mapped_column(sa.String(32))
    personal_digest: Mapped[str | None] = mapped_column(sa.String(64))
    #: when the personal fields were erased (an ``account.erased`` entry tells whose)
    erased_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # Each filter of the API, then the keyset order within it.
        sa.Index("ix_mars_audit_log_actor", "actor_id", "id"),
        sa.Index("ix_mars_audit_log_target", "target", "id"),
        sa.Index("ix_mars_audit_log_action", "action", "id"),
        sa.Index("ix_mars_audit_log_occurred", "occurred_at", "id"),
        # What the sealer reads: the few rows not chained yet, in chain order.
        sa.Index(
            "ix_mars_audit_log_unsealed",
            "occurred_at",
            "id",
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        ),
    )

    @property
    def sealed(self) -> bool:
        return self.seq is not None
