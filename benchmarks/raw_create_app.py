"""The baseline for ``POST /api/v1/projects``: a raw insert with Flask and SQLAlchemy Core.

It reads the JSON body, inserts the project row and answers ``201`` with the row as JSON,
and checks nothing: no token, no schema, no slug rule, no length limit, no unknown-field
check; a taken slug would be a 500. Three variants, chosen by ``mode``:

- ``project``: the project row alone (the "raw insert" of the aim);
- ``outbox``: the project row and an outbox row (``mars_events``, the same columns and
  payload MARS's ``emit`` writes), in one transaction;
- ``all``: the four rows MARS writes, in one transaction: the project, its owner's
  membership (``project_members``), the outbox row and the audit entry (``mars_audit_log``).

MARS (``POST`` with a personal access token) in the same transaction writes the project,
the membership, the outbox row and the audit entry; before it, it looks the token and its
user up, and it reads the project's members for the event's audience.

Serve it with ``gunicorn 'raw_create_app:create_app(mode="outbox")'`` (``--pythonpath
benchmarks``); it reads ``RAW_DATABASE_URL`` (and ``RAW_OWNER_ID`` for the membership,
the audience and the actor) from the environment unless given them.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request

from mars_server.config import normalise_database_url
from mars_server.db import new_id

MODES = ("project", "outbox", "all")

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
    sa.Column("version", sa.Integer),
)
members = sa.Table(
    "project_members",
    metadata,
    sa.Column("project_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), primary_key=True),
    sa.Column("role", sa.String(16)),
    sa.Column("added_at", sa.DateTime(timezone=True)),
)
outbox = sa.Table(
    "mars_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("type", sa.String(100)),
    sa.Column("payload", sa.JSON),
    sa.Column("audience", sa.JSON),
    sa.Column("actor_id", sa.String(64)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("dispatched_at", sa.DateTime(timezone=True)),
)
audit_log = sa.Table(
    "mars_audit_log",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("actor_id", sa.String(200)),
    sa.Column("action", sa.String(100)),
    sa.Column("target", sa.String(200)),
    sa.Column("address", sa.String(100)),
    sa.Column("user_agent", sa.String(500)),
    sa.Column("request_id", sa.String(128)),
    sa.Column("details", sa.JSON),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The per-connection settings MARS gives SQLite (``mars_server/app.py``)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def create_app(
    mode: str = "project", database_url: str | None = None, owner_id: str | None = None
) -> Flask:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    url = normalise_database_url(database_url or os.environ["RAW_DATABASE_URL"])
    owner = owner_id or os.environ.get("RAW_OWNER_ID", "usr_raw")
    app = Flask("raw_create_app")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # as MARS: fields in schema order
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 5})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        naive = True
    else:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10)
        naive = False

    @app.post("/api/v1/projects")
    def create_project() -> Any:
        data = request.get_json()
        now = dt.datetime.now(dt.UTC)
        stored = now.replace(tzinfo=None) if naive else now  # MARS keeps naive UTC in SQLite
        row = {
            "id": new_id("prj"),
            "slug": data["slug"],
            "name": data["name"],
            "description": data.get("description", ""),
            "visibility": data.get("visibility", "private"),
        }
        body = row | {"created_at": _rfc3339(now), "updated_at": _rfc3339(now)}
        with engine.begin() as connection:
            connection.execute(
                projects.insert(), row | {"created_at": stored, "updated_at": stored, "version": 1}
            )
            if mode == "all":
                connection.execute(
                    members.insert(),
                    {
                        "project_id": row["id"],
                        "user_id": owner,
                        "role": "owner",
                        "added_at": stored,
                    },
                )
            if mode in ("outbox", "all"):
                connection.execute(
                    outbox.insert(),
                    {
                        "id": new_id("evt"),
                        "type": "project.created",
                        "payload": body,
                        "audience": [owner],
                        "actor_id": owner,
                        "request_id": f"raw-{mode}",
                        "occurred_at": stored,
                        "dispatched_at": None,
                    },
                )
            if mode == "all":
                connection.execute(
                    audit_log.insert(),
                    {
                        "id": new_id("aud"),
                        "occurred_at": stored,
                        "actor_id": owner,
                        "action": "project.created",
                        "target": row["id"],
                        "address": request.remote_addr,
                        "user_agent": request.user_agent.string[:500] or None,
                        "request_id": f"raw-{mode}",
                        "details": body,
                    },
                )
        return jsonify(body), 201

    return app
