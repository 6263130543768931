"""Create tasks.

Revision ID: tasks_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "tasks_0001"
down_revision = None
branch_labels = ("tasks",)
depends_on = "core_0002"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_project_id_id", "tasks", ["project_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tasks_project_id_id", table_name="tasks")
    op.drop_table("tasks")
