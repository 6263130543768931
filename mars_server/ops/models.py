"""The record of the backups MARS made (``mars backup create`` and the schedule)."""

from __future__ import annotations

import datetime as dt

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
