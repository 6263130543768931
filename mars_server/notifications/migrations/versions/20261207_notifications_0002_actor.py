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
depends_on = "core_0002"  # mars_events, read to fill in actor_id


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("actor_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_notifications_actor_id", ["actor_id"], unique=False)
    # Who caused the notifications made before, from their events still in the outbox.
    op.execute(
        "UPDATE notifications SET actor_id = (SELECT mars_events.actor_id FROM mars_events "
        "WHERE mars_events.id = notifications.event_id) WHERE actor_id IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_actor_id")
        batch.drop_column("actor_id")
