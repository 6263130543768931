"""The core's first tables: idempotency keys.

Revision ID: core_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mars_idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mars_idempotency_keys")),
        sa.UniqueConstraint("owner", "key", name=op.f("uq_mars_idempotency_keys_owner")),
    )
    op.create_index(op.f("ix_mars_idempotency_keys_expires_at"), "mars_idempotency_keys",
                    ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mars_idempotency_keys_expires_at"),
                  table_name="mars_idempotency_keys")
    op.drop_table("mars_idempotency_keys")
