"""Accounts, roles, personal access tokens, e-mail links, sign-in throttling and OAuth.

Revision ID: auth_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "auth_0001"
down_revision = None
branch_labels = ("auth",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "auth_login_throttle",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("window_start", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_login_throttle")),
    )
    op.create_table(
        "auth_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("last_login_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'disabled')", name=op.f("ck_auth_users_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_users")),
        sa.UniqueConstraint("email_key", name=op.f("uq_auth_users_email_key")),
    )
    op.create_table(
        "auth_authorization_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("family_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_authorization_codes_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_authorization_codes")),
        sa.UniqueConstraint("digest", name=op.f("uq_auth_authorization_codes_digest")),
    )
    with op.batch_alter_table("auth_authorization_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_authorization_codes_client_id"), ["client_id"], unique=False
        )

    op.create_table(
        "auth_email_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_email_tokens_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_email_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_auth_email_tokens_digest")),
    )
    with op.batch_alter_table("auth_email_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_email_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "auth_oauth_clients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_digest", sa.String(length=64), nullable=True),
        sa.Column("previous_secret_digest", sa.String(length=64), nullable=True),
        sa.Column(
            "previous_secret_expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("client_type", sa.String(length=16), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("grant_types", sa.JSON(), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_oauth_clients_owner_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_oauth_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_auth_oauth_clients_client_id")),
    )
    with op.batch_alter_table("auth_oauth_clients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_oauth_clients_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "auth_oauth_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("access_digest", sa.String(length=64), nullable=False),
        sa.Column("refresh_digest", sa.String(length=64), nullable=True),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("issued_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("access_expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("refresh_expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rotated_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_oauth_tokens_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_oauth_tokens")),
        sa.UniqueConstraint("access_digest", name=op.f("uq_auth_oauth_tokens_access_digest")),
        sa.UniqueConstraint("refresh_digest", name=op.f("uq_auth_oauth_tokens_refresh_digest")),
    )
    with op.batch_alter_table("auth_oauth_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_oauth_tokens_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_auth_oauth_tokens_family_id"), ["family_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_auth_oauth_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "auth_personal_access_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("hint", sa.String(length=24), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_ip", sa.String(length=45), nullable=True),
        sa.Column("revoked_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_personal_access_tokens_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_personal_access_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_auth_personal_access_tokens_digest")),
    )
    with op.batch_alter_table("auth_personal_access_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_personal_access_tokens_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "auth_user_roles",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("granted_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["auth_users.id"],
            name=op.f("fk_auth_user_roles_user_id_auth_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_auth_user_roles")),
    )


def downgrade() -> None:
    op.drop_table("auth_user_roles")
    with op.batch_alter_table("auth_personal_access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_personal_access_tokens_user_id"))

    op.drop_table("auth_personal_access_tokens")
    with op.batch_alter_table("auth_oauth_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_oauth_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_auth_oauth_tokens_family_id"))
        batch_op.drop_index(batch_op.f("ix_auth_oauth_tokens_client_id"))

    op.drop_table("auth_oauth_tokens")
    with op.batch_alter_table("auth_oauth_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_oauth_clients_owner_id"))

    op.drop_table("auth_oauth_clients")
    with op.batch_alter_table("auth_email_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_email_tokens_user_id"))

    op.drop_table("auth_email_tokens")
    with op.batch_alter_table("auth_authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_authorization_codes_client_id"))

    op.drop_table("auth_authorization_codes")
    op.drop_table("auth_users")
    op.drop_table("auth_login_throttle")
