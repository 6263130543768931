"""In-app notifications and per-user notification preferences.

Revision ID: notifications_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "notifications_0001"
down_revision = None
branch_labels = ("notifications",)
depends_on = "core_0002"


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("in_app", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "event_type", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=2000), nullable=True),
        sa.Column("created_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", mars_server.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "event_id", name=op.f("uq_notifications_user_id")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_unread",
            ["user_id", "id"],
            unique=False,
            postgresql_where=sa.text("read_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL"),
        )
        batch_op.create_index("ix_notifications_user_id_id", ["user_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user_id_id")
        batch_op.drop_index(
            "ix_notifications_unread",
            postgresql_where=sa.text("read_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL"),
        )

    op.drop_table("notifications")
    op.drop_table("notification_preferences")
