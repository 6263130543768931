"""OpenID Connect: the keys ID tokens are signed with, and an authorization code's nonce and
sign-in time.

Revision ID: auth_0006
Revises: auth_0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "auth_0006"
down_revision = "auth_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_signing_keys",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_auth_signing_keys_created_at", "auth_signing_keys", ["created_at"])
    with op.batch_alter_table("auth_authorization_codes") as batch:
        batch.add_column(sa.Column("nonce", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("auth_time", mars_server.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_authorization_codes") as batch:
        batch.drop_column("auth_time")
        batch.drop_column("nonce")
    op.drop_index("ix_auth_signing_keys_created_at", table_name="auth_signing_keys")
    op.drop_table("auth_signing_keys")
