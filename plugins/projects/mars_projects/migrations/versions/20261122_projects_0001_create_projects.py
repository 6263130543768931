"""Create projects.

Revision ID: projects_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "projects_0001"
down_revision = None
branch_labels = ("projects",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("created_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mars_server.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("visibility IN ('public', 'private')",
                           name=op.f("ck_projects_visibility")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("slug", name=op.f("uq_projects_slug")),
    )
    op.create_index("ix_projects_visibility_id", "projects", ["visibility", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_projects_visibility_id", table_name="projects")
    op.drop_table("projects")
