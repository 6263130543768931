"""Personal access tokens remember the OAuth app that created them (with the account:tokens
scope), so taking that app's authorization back, or deleting the app, revokes them too.

Revision ID: auth_0004
Revises: auth_0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0004"
down_revision = "auth_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_personal_access_tokens") as batch:
        batch.add_column(sa.Column("issued_by_client_id", sa.String(length=64), nullable=True))
        batch.create_index(
            "ix_auth_personal_access_tokens_issued_by_client_id", ["issued_by_client_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_personal_access_tokens") as batch:
        batch.drop_index("ix_auth_personal_access_tokens_issued_by_client_id")
        batch.drop_column("issued_by_client_id")
