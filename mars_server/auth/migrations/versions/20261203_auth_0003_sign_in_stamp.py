"""The users' sign-in stamp: renewed when all their credentials are revoked, it signs out the
browsers signed in to the OAuth pages before then.

Revision ID: auth_0003
Revises: auth_0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0003"
down_revision = "auth_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_users") as batch:
        batch.add_column(
            sa.Column("sign_in_stamp", sa.String(length=32), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_users") as batch:
        batch.drop_column("sign_in_stamp")
