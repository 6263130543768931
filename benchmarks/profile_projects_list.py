"""Where MARS's time goes on ``GET /api/v1/projects?limit=50``, layer by layer.

In process, through Flask's test client, over a fresh SQLite database brought to head by
MARS's migrations: the raw Flask + SQLAlchemy app (``raw_app.py``) is timed, then MARS as it
is, then MARS with one more of its layers swapped for the plainest equivalent at each step
(monkeypatched in this process only; no file is changed). The differences are what each
layer costs per request. Every step must still answer with the very same JSON body.

Usage::

    /work/venv/bin/python benchmarks/profile_projects_list.py [--rows 100000]
        [--requests 2000] [--cprofile 40]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask
    from flask.testing import FlaskClient

HERE = Path(__file__).resolve().parent
URL = "/api/v1/projects?limit=50"


def per_request_ms(client: FlaskClient, requests: int, batches: int = 7) -> float:
    """Median over ``batches`` batches of the milliseconds one request takes."""
    for _ in range(max(requests // 10, 50)):
        client.get(URL)
    batch = max(requests // batches, 1)
    timings = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(batch):
            client.get(URL)
        timings.append((time.perf_counter() - started) / batch * 1000)
    return statistics.median(timings)


def project_dict(item: Any) -> dict[str, Any]:
    """``ProjectSchema`` by hand: works on ORM objects and on Core rows alike."""
    return {
        "id": item.id,
        "slug": item.slug,
        "name": item.name,
        "description": item.description,
        "visibility": item.visibility,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }


def hand_page_dump(_schema: object, page: Any, **_kwargs: Any) -> dict[str, Any]:
    return {"items": [project_dict(item) for item in page.items], "next_cursor": page.next_cursor}


def row_paginate(use_engine: bool) -> Callable[..., Any]:
    """``paginate`` loading Core rows (through the session, or a bare engine connection)."""
    from flask import current_app, g, request

    from mars_server.db import db
    from mars_server.http import pagination

    def paginate(stmt: Any, key: Any, args: dict[str, Any]) -> Any:
        filters = {k: v for k, v in args.items() if k not in ("limit", "cursor")}
        scope = pagination._scope(filters)
        limit = args.get("limit") or current_app.config["MARS"]["PAGE_SIZE_DEFAULT"]
        if args.get("cursor"):
            stmt = stmt.where(key > pagination._serializer().loads(args["cursor"])[1])
        stmt = stmt.with_only_columns(*key.class_.__table__.c).order_by(key).limit(limit + 1)
        if use_engine:
            with db.engine.connect() as connection:
                rows = connection.execute(stmt).all()
        else:
            rows = db.session.execute(stmt).all()
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = pagination._serializer().dumps([scope, getattr(items[-1], key.key)])
            query = request.args.to_dict()
            query["cursor"] = next_cursor
            g.link_next = f"{request.base_url}?{urlencode(query)}"
        return pagination.Page(items, next_cursor)

    return paginate


def cached_schema_parser() -> Callable[..., Any]:
    """webargs builds a new Schema per request when given a class; keep one per class."""
    from flask_smorest.arguments import ArgumentsMixin

    parser = ArgumentsMixin.ARGUMENTS_PARSER
    original = parser._get_schema
    cache: dict[type, Any] = {}

    def get_schema(argmap: Any, req: Any) -> Any:
        if isinstance(argmap, type):
            if argmap not in cache:
                cache[argmap] = argmap()
            return cache[argmap]
        return original(argmap, req)

    parser._get_schema = get_schema  # type: ignore[method-assign]
    return original


def micro_us(fn: Callable[[], object], number: int = 5000) -> float:
    """Median microseconds of one call of ``fn``, over five runs of ``number`` calls."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number * 1e6)
    return statistics.median(runs)


def print_micro(app: Flask) -> None:
    """The small per-request costs, each alone (ablation steps cannot resolve them)."""
    from flask import Response

    from mars_projects import services
    from mars_projects.schemas import ProjectPageSchema, ProjectQueryArgsSchema
    from mars_server.db import db
    from mars_server.http import idempotency, pagination, requests

    with app.test_request_context(URL):
        page = services.list_projects({"limit": 50})
        schema = ProjectPageSchema()
        response = Response("{}")
        finish = app.after_request_funcs[None][0]
        costs = [
            ("ProjectPageSchema().dump(page of 50)", lambda: schema.dump(page)),
            ("same page as dicts by hand", lambda: hand_page_dump(None, page)),
            ("ProjectQueryArgsSchema() (webargs, per request)", ProjectQueryArgsSchema),
            ("hook start_request (uuid4 request id)", requests.start_request),
            ("hook claim_key (a GET: returns at once)", idempotency.claim_key),
            ("hook _finish_response (etag, link, id, log)", lambda: finish(response)),
            ("pagination._scope (json + sha256)", lambda: pagination._scope({})),
        ]
        print(f"\n{'one call of':<50}{'us':>8}")
        for name, fn in costs:
            print(f"{name:<50}{micro_us(fn, 500 if 'page' in name else 5000):>8.1f}")
        db.session.remove()


def without_hooks(app: Flask) -> None:
    app.before_request_funcs.clear()
    app.after_request_funcs.clear()
    app.teardown_request_funcs.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3500, help="timed requests per step")
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="also print cProfile's top N functions for MARS as it is",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_projects_list as bench
    import raw_app

    import mars_projects.services
    from mars_projects.schemas import ProjectPageSchema

    workdir = Path(tempfile.mkdtemp(prefix="mars-profile-"))
    try:
        secret_key = secrets.token_urlsafe(36)
        database = bench.Database(f"sqlite:///{workdir / 'profile.db'}")
        app = bench.build_database(database, args.rows, secret_key, workdir / "instance")
        raw = raw_app.create_app(database.url, secret_key).test_client()
        mars = app.test_client()
        expected = mars.get(URL).get_json()
        if raw.get(URL).get_json()["items"] != expected["items"]:
            raise RuntimeError("the raw app's items differ from MARS's")

        if args.cprofile:
            per_request_ms(mars, 200)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.requests):
                mars.get(URL)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.cprofile)

        print_micro(app)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("MARS as it is", lambda: None),
            (
                "- marshmallow page dump (dict by hand)",
                lambda: setattr(ProjectPageSchema, "dump", hand_page_dump),
            ),
            ("- new args Schema per request (cached)", cached_schema_parser),
            ("- MARS before/after/teardown hooks", lambda: without_hooks(app)),
            (
                "- ORM entities (Core rows via session)",
                lambda: setattr(mars_projects.services, "paginate", row_paginate(False)),
            ),
            (
                "- Flask-SQLAlchemy session (engine.connect)",
                lambda: setattr(mars_projects.services, "paginate", row_paginate(True)),
            ),
        ]
        raw_ms = per_request_ms(raw, args.requests)
        print(
            f"\n{args.rows:,} projects, {args.requests} requests per step, SQLite, "
            "in process (test client)"
        )
        print(f"{'step':<46}{'ms/req':>8}{'saved':>8}{'raw/this':>10}")
        print(f"{'raw Flask + SQLAlchemy Core':<46}{raw_ms:>8.3f}{'':>8}{1:>10.3f}")
        previous = None
        for name, apply in steps:
            apply()
            body = mars.get(URL).get_json()
            if body != expected:
                raise RuntimeError(f"step {name!r} changed the response body")
            ms = per_request_ms(mars, args.requests)
            saved = f"{previous - ms:8.3f}" if previous is not None else f"{'':>8}"
            print(f"{name:<46}{ms:>8.3f}{saved}{raw_ms / ms:>10.3f}", flush=True)
            previous = ms
        print(
            f"{'(rest: flask-smorest/webargs wrappers, paginate)':<46}"
            f"{previous - raw_ms:>8.3f} ms above raw"
        )
        print(
            "(steps move by +-0.1 ms from run to run on a shared machine; the small costs are"
            " timed alone above)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
