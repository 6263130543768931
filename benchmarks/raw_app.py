"""The baseline: ``GET /api/v1/projects`` written by hand with Flask and SQLAlchemy Core.

It runs the same keyset query as MARS does for an anonymous caller, who sees public
projects only (``WHERE visibility = 'public' AND id > :last ORDER BY id LIMIT n + 1``), and
answers with the same JSON body, ``{"items": [...], "next_cursor": ...}``, with a signed
cursor, but without MARS's layers: no plugin system, no flask-smorest argument parsing or
response schema, no ORM objects, no request id, ETag, Link or idempotency hooks.

Serve it with ``gunicorn 'raw_app:create_app()'`` (``--pythonpath benchmarks``); it reads
``RAW_DATABASE_URL`` and ``RAW_SECRET_KEY`` from the environment unless given them.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import sqlalchemy as sa
from flask import Flask, abort, jsonify, request
from itsdangerous import BadSignature, URLSafeSerializer

from mars_server.config import normalise_database_url

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

metadata = sa.MetaData()
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("slug", sa.String(64)),
    sa.Column("name", sa.String(200)),
    sa.Column("description", sa.Text),
    sa.Column("visibility", sa.String(16)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
COLUMNS = [
    projects.c.id,
    projects.c.slug,
    projects.c.name,
    projects.c.description,
    projects.c.visibility,
    projects.c.created_at,
    projects.c.updated_at,
]


def _rfc3339(value: dt.datetime) -> str:
    """UTC, as MARS writes it (SQLite gives naive UTC, PostgreSQL an aware value)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The per-connection settings MARS gives SQLite, so both read the file the same way."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_app(database_url: str | None = None, secret_key: str | None = None) -> Flask:
    url = normalise_database_url(database_url or os.environ["RAW_DATABASE_URL"])
    app = Flask("raw_app")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # as MARS: fields in schema order
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 5})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10)
    cursors = URLSafeSerializer(secret_key or os.environ["RAW_SECRET_KEY"], salt="raw.cursor.v1")

    @app.get("/api/v1/projects")
    def list_projects() -> Any:
        try:
            limit = int(request.args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            abort(422)
        if not 1 <= limit <= MAX_LIMIT:
            abort(422)
        stmt = (
            sa.select(*COLUMNS)
            .where(projects.c.visibility == "public")
            .order_by(projects.c.id)
            .limit(limit + 1)
        )
        if request.args.get("cursor"):
            try:
                last_id = cursors.loads(request.args["cursor"])
            except BadSignature:
                abort(400)
            stmt = stmt.where(projects.c.id > last_id)
        with engine.connect() as connection:
            rows = connection.execute(stmt).all()
        items = [
            {
                "id": row.id,
                "slug": row.slug,
                "name": row.name,
                "description": row.description,
                "visibility": row.visibility,
                "created_at": _rfc3339(row.created_at),
                "updated_at": _rfc3339(row.updated_at),
            }
            for row in rows[:limit]
        ]
        next_cursor = cursors.dumps(rows[limit - 1].id) if len(rows) > limit else None
        return jsonify(items=items, next_cursor=next_cursor)

    return app
