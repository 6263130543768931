"""Remembered consent: the scopes each user allowed each confidential app.

Revision ID: auth_0002
Revises: auth_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_oauth_consents",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("granted_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["auth_oauth_clients.client_id"],
            name=op.f("fk_auth_oauth_consents_client_id_auth_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_oauth_consents_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "client_id", name=op.f("pk_auth_oauth_consents")),
    )
    with op.batch_alter_table("auth_oauth_consents") as batch:
        batch.create_index(batch.f("ix_auth_oauth_consents_client_id"), ["client_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_oauth_consents") as batch:
        batch.drop_index(batch.f("ix_auth_oauth_consents_client_id"))
    op.drop_table("auth_oauth_consents")
