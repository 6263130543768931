"""The ``Project`` model."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, Timestamped, Versioned, new_id

VISIBILITIES = ("public", "private")


class Project(Timestamped, Versioned, Model):
    __tablename__ = "projects"
    __table_args__ = (
        sa.CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
        sa.Index("ix_projects_visibility_id", "visibility", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("prj"))
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    visibility: Mapped[str] = mapped_column(sa.String(16), default="private")
