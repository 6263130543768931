"""The record of backups: what the backup metrics and the "no good backup" alert read.

Revision ID: core_0003
Revises: core_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "core_0003"
down_revision = "core_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mars_backups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("started_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mars_backups")),
    )
    op.create_index(
        "ix_mars_backups_status_finished", "mars_backups", ["status", "finished_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mars_backups_status_finished", table_name="mars_backups")
    op.drop_table("mars_backups")
