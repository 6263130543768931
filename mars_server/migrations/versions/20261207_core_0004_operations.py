"""Long-running operations: what a 202 answer's Location points to.

Revision ID: core_0004
Revises: core_0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "core_0004"
down_revision = "core_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mars_operations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("result", sa.String(length=500), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed')",
            name=op.f("ck_mars_operations_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mars_operations")),
    )
    op.create_index("ix_mars_operations_owner_id", "mars_operations", ["owner_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mars_operations_owner_id", table_name="mars_operations")
    op.drop_table("mars_operations")
