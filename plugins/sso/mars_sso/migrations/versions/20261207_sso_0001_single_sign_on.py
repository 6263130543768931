"""Single sign-on: linked identities, sign-ins under way, SAML assertions seen.

Revision ID: sso_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "sso_0001"
down_revision = None
branch_labels = ("sso",)
depends_on = "core_0002"


def upgrade() -> None:
    op.create_table(
        "sso_identities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_identities")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_sso_identities_provider")),
    )
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_identities_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sso_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=True),
        sa.Column("code_verifier", sa.String(length=128), nullable=True),
        sa.Column("saml_request_id", sa.String(length=128), nullable=True),
        sa.Column("next_url", sa.Text(), nullable=True),
        sa.Column("binding", sa.String(length=64), nullable=True),
        sa.Column("fresh", sa.Boolean(), nullable=False),
        sa.Column("link_user_id", sa.String(length=40), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("confirm_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_requests")),
        sa.UniqueConstraint("saml_request_id", name=op.f("uq_sso_requests_saml_request_id")),
    )
    with op.batch_alter_table("sso_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_requests_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "sso_seen_assertions",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("assertion_id", sa.String(length=255), nullable=False),
        sa.Column("expires_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "assertion_id", name=op.f("pk_sso_seen_assertions")),
    )
    with op.batch_alter_table("sso_seen_assertions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_seen_assertions_expires_at"), ["expires_at"], unique=False
        )



def downgrade() -> None:
    with op.batch_alter_table("sso_seen_assertions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_seen_assertions_expires_at"))

    op.drop_table("sso_seen_assertions")
    with op.batch_alter_table("sso_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_requests_expires_at"))

    op.drop_table("sso_requests")
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_identities_user_id"))

    op.drop_table("sso_identities")
