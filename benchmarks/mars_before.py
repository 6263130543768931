"""MARS without its response fast paths, so one run can time MARS before and after them.

``create_app()`` builds the real MARS app after undoing, in this process only, what
``mars_server/http/serialize.py`` and the Blueprint's ``response``/``arguments`` overrides
brought (2026-11-22):

- response schemas dump with marshmallow again (flask-smorest's own ``response``);
- a schema class given to ``arguments`` is instantiated by webargs on each request again
  (flask-smorest's own ``arguments``);
- response bodies are encoded by Flask's ``json`` provider again, not orjson;
- ``log_request`` builds its record's fields even when INFO is off, as it did.

Everything else is today's MARS. Serve it with
``gunicorn --pythonpath benchmarks 'mars_before:create_app()'``; settings come from the
``MARS_*`` environment variables, as for MARS itself.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response


def _log_request_before(response: Response) -> None:
    """``mars_server.http.requests.log_request`` as it was before its early return."""
    from flask import g, request

    from mars_server.http.requests import access_log

    started = g.get("request_started")
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "remote_addr": request.remote_addr,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        },
    )


def undo_fast_paths() -> None:
    """Take the fast paths out; must run before any plugin's views are imported."""
    from mars_server.http import blueprint, requests

    if any(name.endswith(".views") and name.startswith("mars_") for name in sys.modules):
        raise RuntimeError("undo_fast_paths() must run before the plugins' views are imported")
    for name in ("arguments", "response"):
        if name in vars(blueprint.Blueprint):
            delattr(blueprint.Blueprint, name)
    requests.log_request = _log_request_before


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from flask.json.provider import DefaultJSONProvider

    undo_fast_paths()
    import mars_server

    app = mars_server.create_app(config)
    app.json = DefaultJSONProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # as MARS: schema order
    return app
