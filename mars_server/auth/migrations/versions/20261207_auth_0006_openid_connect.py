"""OpenID Connect and JWT access tokens: the keys MARS signs with, an authorization code's
nonce, sign-in time and resource indicators (RFC 8707), and each app's access token format.

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
    with op.batch_alter_table("auth_oauth_clients") as batch:
        batch.add_column(
            sa.Column(
                "access_token_format", sa.String(length=8), nullable=False, server_default="opaque"
            )
        )
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("auth_oauth_tokens") as batch:
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))
    with op.batch_alter_table("auth_authorization_codes") as batch:
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("nonce", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("auth_time", mars_server.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_auth_authorization_codes_client_id_nonce",
        "auth_authorization_codes",
        ["client_id", "nonce"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_auth_authorization_codes_client_id_nonce", table_name="auth_authorization_codes"
    )
    with op.batch_alter_table("auth_authorization_codes") as batch:
        batch.drop_column("auth_time")
        batch.drop_column("nonce")
        batch.drop_column("resources")
    with op.batch_alter_table("auth_oauth_tokens") as batch:
        batch.drop_column("resources")
    with op.batch_alter_table("auth_oauth_clients") as batch:
        batch.drop_column("resources")
        batch.drop_column("access_token_format")
    op.drop_index("ix_auth_signing_keys_created_at", table_name="auth_signing_keys")
    op.drop_table("auth_signing_keys")
