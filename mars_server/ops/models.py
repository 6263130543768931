"""The record of the backups MARS made (``mars backup create`` and the schedule)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model

SUCCEEDED, FAILED = "succeeded", "failed"


class BackupRecord(Model):
    """One backup, good or failed: what the metrics (and the "no good backup" alert) read.
    The archive itself lives where it was written, not in the database."""

    __tablename__ = "mars_backups"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(sa.String(16))
    #: the archive's file name
    file: Mapped[str] = mapped_column(sa.String(255))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    error: Mapped[str | None] = mapped_column(sa.String(1000))

    __table_args__ = (sa.Index("ix_mars_backups_status_finished", "status", "finished_at"),)


OPERATION_STATUSES = ("pending", "running", "succeeded", "failed")


class Operation(Model):
    """Work that outlives its request (docs/http.md#long-running-operations): the request
    answers 202 with ``Location: /api/v1/operations/{id}``, a job does the work, and the
    caller polls this until it ends."""

    __tablename__ = "mars_operations"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    #: what it does, e.g. ``account.export``
    kind: Mapped[str] = mapped_column(sa.String(100))
    #: who asked: only they see it
    owner_id: Mapped[str] = mapped_column(sa.String(64), index=True, info={"user_id": True})
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    #: 0 to 1, when the work says how far it is
    progress: Mapped[float | None] = mapped_column(sa.Float)
    #: where the result is (a path of the API), once it succeeded
    result: Mapped[str | None] = mapped_column(sa.String(500))
    #: an RFC 9457 problem, once it failed
    error: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
