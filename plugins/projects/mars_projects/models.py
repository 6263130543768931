"""The ``Project`` model."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, Timestamped, Versioned, new_id, utcnow

VISIBILITIES = ("public", "private")


class Project(Timestamped, Versioned, Model):
    __tablename__ = "projects"
    __table_args__ = (
        sa.CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
        sa.Index("ix_projects_visibility_id", "visibility", "id"),
        # ?sort= walks these (the id breaks ties): a deep page is as cheap as the first.
        sa.Index("ix_projects_name_id", "name", "id"),
        sa.Index("ix_projects_created_at_id", "created_at", "id"),
        sa.Index("ix_projects_updated_at_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("prj"))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    visibility: Mapped[str] = mapped_column(sa.String(16), default="private")


MEMBER_ROLES = ("owner", "maintainer", "member")


class ProjectMember(Model):
    """Who belongs to a project, and as what.

    ``user_id`` is a user's public id, not a foreign key: a plugin never depends on another
    plugin's tables (it checks ids through the ``mars_user_info`` hook instead).
    """

    __tablename__ = "project_members"
    __table_args__ = (sa.CheckConstraint("role IN ('owner', 'maintainer', 'member')", name="role"),)

    project_id: Mapped[str] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        sa.String(40), primary_key=True, index=True, info={"user_id": True}
    )
    role: Mapped[str] = mapped_column(sa.String(16))
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
