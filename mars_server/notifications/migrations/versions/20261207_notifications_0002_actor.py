"""Who caused a notification's event: erasing them renames them in others' notifications.

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("actor_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_notifications_actor_id", ["actor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_actor_id")
        batch.drop_column("actor_id")
