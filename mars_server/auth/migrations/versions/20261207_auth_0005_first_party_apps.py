"""First-party apps: declared by the operator (no owner), never asked for consent, and the
addresses an app may be sent back to after signing out (RP-initiated logout).

Revision ID: auth_0005
Revises: auth_0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0005"
down_revision = "auth_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_oauth_clients") as batch:
        batch.add_column(
            sa.Column("first_party", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.alter_column("owner_id", existing_type=sa.String(length=40), nullable=True)


def downgrade() -> None:
    # First-party apps have no owner: they cannot be kept without the column's new meaning.
    op.execute(sa.text("DELETE FROM auth_oauth_clients WHERE owner_id IS NULL"))
    with op.batch_alter_table("auth_oauth_clients") as batch:
        batch.alter_column("owner_id", existing_type=sa.String(length=40), nullable=False)
        batch.drop_column("post_logout_redirect_uris")
        batch.drop_column("first_party")
