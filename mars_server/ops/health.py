"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database, schema, plugins)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import Blueprint

from mars_server.db import db
from mars_server.hookspecs import HealthCheck
from mars_server.http.problems import problem_response
from mars_server.ops import migrations
from mars_server.state import mars_state

if TYPE_CHECKING:
    from flask import Response

log = logging.getLogger(__name__)
blueprint = Blueprint("mars_health", __name__)


def check_database() -> None:
    with db.engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def check_migrations() -> None:
    missing = migrations.missing_heads()
    if missing:
        raise RuntimeError(f"not at head: run `mars db upgrade` ({len(missing)} pending)")


CORE_CHECKS = (HealthCheck("database", check_database), HealthCheck("migrations", check_migrations))


@blueprint.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz() -> Response | tuple[dict[str, object], int]:
    results: dict[str, str] = {}
    for check in mars_state().health_checks:
        try:
            check.check()
        except migrations.UnknownRevisions as exc:
            # What the operator must do (reinstall or purge a plugin) names no infrastructure.
            log.warning("readiness check %s failed: %s", check.name, exc.message)
            results[check.name] = f"failed: {exc.message}"
        except Exception as exc:
            # The reason goes to the logs only: /readyz is public and must not describe
            # the infrastructure behind it.
            log.warning("readiness check %s failed: %s: %s", check.name, type(exc).__name__, exc)
            results[check.name] = "failed"
            db.session.rollback()  # an aborted transaction must not fail the next check
        else:
            results[check.name] = "ok"
    if any(result != "ok" for result in results.values()):
        failed = ", ".join(name for name, result in results.items() if result != "ok")
        return problem_response(
            503, detail=f"Not ready: {failed}.", checks=results, headers={"Retry-After": "5"}
        )
    return {"status": "ok", "checks": results}, 200
