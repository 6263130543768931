"""Data protection: a person's exports of their data, and the time their account is due
for erasure.

Revision ID: auth_0007
Revises: auth_0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "auth_0007"
down_revision = "auth_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_users") as batch:
        batch.add_column(
            sa.Column("deletion_due_at", mars_server.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "auth_data_exports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("operation_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ready_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("downloaded_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'ready', 'downloaded', 'expired', 'failed')",
            name=op.f("ck_auth_data_exports_status"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_data_exports_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_data_exports")),
        sa.UniqueConstraint("digest", name=op.f("uq_auth_data_exports_digest")),
    )
    with op.batch_alter_table("auth_data_exports") as batch:
        batch.create_index("ix_auth_data_exports_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("auth_data_exports")
    with op.batch_alter_table("auth_users") as batch:
        batch.drop_column("deletion_due_at")
