"""The ``Task`` model."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, Timestamped, Versioned, new_id


class Task(Timestamped, Versioned, Model):
    """A task of a project: its members see it, change it and tick it off.

    ``project_id`` and ``created_by`` are public ids, not foreign keys: a plugin never depends
    on another plugin's tables (it asks ``mars_projects.api`` instead).
    """

    __tablename__ = "tasks"
    __table_args__ = (sa.Index("ix_tasks_project_id_id", "project_id", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("tsk"))
    project_id: Mapped[str] = mapped_column(sa.String(40))
    created_by: Mapped[str] = mapped_column(sa.String(40), info={"user_id": True})
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    done: Mapped[bool] = mapped_column(default=False)
