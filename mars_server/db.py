"""The data layer every plugin shares: ``db``, the declarative base and column helpers.

Models know nothing of HTTP: this module imports neither Flask's request machinery nor
flask-smorest.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import has_request_context, request
from flask.globals import app_ctx
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, registry
from ulid import ULID

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect

#: Constraint names Alembic can address on every backend (SQLite batch mode needs them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """An opaque, time-ordered public id: ``<prefix>_`` and a lower-case ULID."""
    return f"{prefix}_{str(ULID()).lower()}"


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A UTC timestamp on every backend: aware in Python, naive UTC in SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={dt.datetime: UTCDateTime()},
    )


def _session_scope() -> int:
    """One session per request, and another for code outside requests (CLI, jobs, tests).

    Flask-SQLAlchemy scopes sessions to the app context by default; a test client or a CLI
    command that runs requests inside one long app context would then share one session,
    and its identity map, across every request.
    """
    if has_request_context():
        return id(request._get_current_object())  # type: ignore[attr-defined]
    return id(app_ctx._get_current_object())  # type: ignore[attr-defined]


db = SQLAlchemy(model_class=Base, session_options={"scopefunc": _session_scope})

if TYPE_CHECKING:
    Model = Base  # what db.Model is, spelled so type checkers follow it
else:
    Model = db.Model


def _same_as_created(context: Any) -> dt.datetime:
    """A new row was updated when it was created: one instant, not two calls to the clock."""
    created = context.get_current_parameters().get("created_at")
    return created if isinstance(created, dt.datetime) else utcnow()


class Timestamped:
    """``created_at`` and ``updated_at``, set by the database session, always UTC."""

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_same_as_created, onupdate=utcnow)


class Versioned:
    """A ``version`` column that SQLAlchemy checks on every UPDATE and DELETE.

    Two writers that loaded the same version can never both succeed: the second one's
    ``UPDATE ... WHERE version = :old`` matches no row and raises ``StaleDataError``,
    which the HTTP layer answers with 412.
    """

    version: Mapped[int] = mapped_column(nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
