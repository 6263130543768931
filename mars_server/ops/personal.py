"""The operations' part in a person's export and erasure (docs/privacy.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from flask import current_app

from mars_server.db import db, utcnow
from mars_server.hookspecs import PersonalData
from mars_server.ops.models import Operation

INVENTORY = [
    PersonalData(
        what="the long-running operations a person started: what, when, how it ended",
        where="mars_operations (owner_id, kind, status, result, error)",
        why="to tell the person how their request is getting on",
        kept="MARS_OPERATIONS_RETENTION_DAYS (30) after they end",
        erasure="deleted",
    )
]


def export(user_id: str) -> dict[str, Any]:
    rows = db.session.scalars(
        sa.select(Operation).where(Operation.owner_id == user_id).order_by(Operation.created_at)
    )
    found = [
        {
            "id": o.id,
            "kind": o.kind,
            "status": o.status,
            "result": o.result,
            "created_at": o.created_at,
            "finished_at": o.finished_at,
        }
        for o in rows
    ]
    return {"operations": found} if found else {}


def erase(user_id: str) -> list[str]:
    count = db.session.execute(sa.delete(Operation).where(Operation.owner_id == user_id)).rowcount  # type: ignore[attr-defined]
    return [f"{count} operations deleted"] if count else []


def purge_operations() -> int:
    """Delete operations that ended ``MARS_OPERATIONS_RETENTION_DAYS`` ago."""
    days = current_app.config["MARS"]["OPERATIONS_RETENTION_DAYS"]
    return int(
        db.session.execute(
            sa.delete(Operation).where(Operation.finished_at < utcnow() - dt.timedelta(days=days))
        ).rowcount  # type: ignore[attr-defined]
    )
