"""The second baseline: ``GET /api/v1/projects`` as a plain flask-smorest app would write it.

flask-smorest (a ``Blueprint`` with ``@arguments`` and ``@response`` marshmallow schemas, the
OpenAPI document built at start) and Flask-SQLAlchemy (an ORM model, the request-scoped
session), the way their documentation shows, and nothing else: no authentication, no rate
limits, no metrics, no request id, ETag, Link, Cache-Control or idempotency hooks. It runs
the query MARS runs for an anonymous caller (public projects, keyset on ``id``) and answers
with the same body, ``{"items": [...], "next_cursor": ...}``, and an itsdangerous-signed
cursor. So the benchmark can say whether MARS, doing more, is slower than the framework
it is built on.

Serve it with ``gunicorn 'smorest_app:create_app()'`` (``--pythonpath benchmarks``); it
reads ``RAW_DATABASE_URL`` and ``RAW_SECRET_KEY`` from the environment unless given them.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import Flask
from flask_smorest import Api, Blueprint, abort
from flask_sqlalchemy import SQLAlchemy
from itsdangerous import BadSignature, URLSafeSerializer
from raw_app import _sqlite_pragmas  # the same settings: both read the file alike
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.config import normalise_database_url

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

db = SQLAlchemy()


class Project(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text)
    visibility: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class UTCDateTime(ma.fields.DateTime):
    """RFC 3339 in UTC, as MARS writes it (SQLite gives naive UTC, PostgreSQL aware)."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return None if value is None else value.astimezone(dt.UTC).isoformat()


class ProjectSchema(ma.Schema):
    id = ma.fields.String()
    slug = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    visibility = ma.fields.String()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class PageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ProjectSchema))
    next_cursor = ma.fields.String(allow_none=True)


class ListArgsSchema(ma.Schema):
    limit = ma.fields.Integer(
        load_default=DEFAULT_LIMIT, validate=ma.validate.Range(min=1, max=MAX_LIMIT)
    )
    cursor = ma.fields.String(load_default=None)


def create_app(database_url: str | None = None, secret_key: str | None = None) -> Flask:
    url = normalise_database_url(database_url or os.environ["RAW_DATABASE_URL"])
    app = Flask("smorest_app")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS=(
            {"connect_args": {"timeout": 5}}
            if url.startswith("sqlite")
            else {"pool_pre_ping": True, "pool_size": 10}
        ),
        API_TITLE="Projects",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # fields in schema order
    db.init_app(app)
    if url.startswith("sqlite"):
        with app.app_context():
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
    cursors = URLSafeSerializer(secret_key or os.environ["RAW_SECRET_KEY"], salt="raw.cursor.v1")
    api = Api(app)
    blp = Blueprint("projects", __name__, url_prefix="/api/v1/projects")

    @blp.route("")
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, PageSchema)
    def list_projects(args: dict[str, Any]) -> dict[str, Any]:
        limit = args["limit"]
        stmt = (
            sa.select(Project)
            .where(Project.visibility == "public")
            .order_by(Project.id)
            .limit(limit + 1)
        )
        if args["cursor"]:
            try:
                stmt = stmt.where(Project.id > cursors.loads(args["cursor"]))
            except BadSignature:
                abort(400, message="Invalid cursor.")
        rows = db.session.scalars(stmt).all()
        next_cursor = cursors.dumps(rows[limit - 1].id) if len(rows) > limit else None
        return {"items": rows[:limit], "next_cursor": next_cursor}

    api.register_blueprint(blp)
    return app
