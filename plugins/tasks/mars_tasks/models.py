"""The ``Task`` model."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, Timestamped, Versioned, new_id


class Task(Timestamped, Versioned, Model):
    """A task, kept by the user who created it.

    ``owner_id`` is a user's public id, not a foreign key: a plugin never depends on another
    plugin's tables (it checks ids through ``mars_server.http.user_info`` instead).
    """

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("tsk"))
    owner_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
