"""Where MARS's time goes on ``GET /api/v1/projects?limit=50``, layer by layer.

In process, through Flask's test client, over a fresh SQLite database brought to head by
MARS's migrations: the raw Flask + SQLAlchemy app (``raw_app.py``) is timed, then MARS as it
is, then MARS with one more of its layers swapped for the plainest equivalent at each step
(monkeypatched in this process only; no file is changed). Every step must still answer with
the very same JSON body. The configurations are timed round-robin, a batch of requests each
per round, so that load from other processes falls on all of them alike; what a layer costs
is the median over rounds of the difference between two neighbouring steps.

Usage::

    .venv/bin/python benchmarks/profile_projects_list.py [--rows 100000]
        [--rounds 7] [--batch 400] [--cprofile 40] [--before]

``--before`` profiles MARS with its response fast paths taken out (``mars_before.py``).
``--token`` profiles MARS as ``bench_production.py`` serves it: every request with a personal
access token (``projects:read``), rate limits on (a policy never reached), the token cache
warm, and with ``--redis-url`` (e.g. ``redis://127.0.0.1:6379/5``, emptied at the start and
the end) the limiter and the token cache in Redis.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask
    from flask.testing import FlaskClient

HERE = Path(__file__).resolve().parent
URL = "/api/v1/projects?limit=50"


def batch_ms(client: FlaskClient, requests: int, warmup: int = 20) -> float:
    """Milliseconds one request takes, on average over ``requests`` requests."""
    for _ in range(warmup):
        client.get(URL)
    started = time.perf_counter()
    for _ in range(requests):
        client.get(URL)
    return (time.perf_counter() - started) / requests * 1000


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
    from flask import current_app

    from mars_server.db import db
    from mars_server.http import pagination

    def paginate(stmt: Any, key: Any, args: dict[str, Any], *, name: str) -> Any:
        filters = {k: v for k, v in args.items() if k not in ("limit", "cursor")}
        scope = pagination._scope(name, filters)
        limit = args.get("limit") or current_app.config["MARS"]["PAGE_SIZE_DEFAULT"]
        if args.get("cursor"):
            stmt = stmt.where(key > pagination._serializer().loads(args["cursor"])[1])
        stmt = stmt.with_only_columns(*key.class_.__table__.c).order_by(key).limit(limit + 1)
        if use_engine:
            with db.engine.connect() as connection:
                rows = list(connection.execute(stmt))
        else:
            rows = list(db.session.execute(stmt))
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = pagination._serializer().dumps([scope, getattr(items[-1], key.key)])
        return pagination.Page(items, next_cursor)

    return paginate


@dataclass
class Layer:
    """One of MARS's layers, and how to swap it out and back in (restoring twice is fine)."""

    name: str
    remove: Callable[[], object]
    restore: Callable[[], object]


def response_schema(app: Flask, endpoint: str, method: str) -> Any:
    """The schema instance flask-smorest's ``response`` wrapper of a view dumps with."""
    import marshmallow as ma

    view = app.view_functions[endpoint].view_class  # type: ignore[attr-defined]
    func = getattr(view, method)
    while func is not None:
        code = getattr(func, "__code__", None)
        if code is not None and code.co_filename.endswith("flask_smorest/response.py"):
            for cell in func.__closure__ or ():
                if isinstance(cell.cell_contents, ma.Schema):
                    return cell.cell_contents
        func = getattr(func, "__wrapped__", None)
    raise LookupError(f"no response schema on {endpoint} {method}")


def dump_layer(app: Flask) -> Layer:
    """The response schema's dump (compiled, or marshmallow's with ``--before``)."""
    schema = response_schema(app, "projects.Projects", "get")
    in_use = vars(schema).get("dump")

    def by_hand(page: Any, *, many: bool | None = None) -> dict[str, Any]:
        return hand_page_dump(schema, page)

    def restore() -> None:
        if in_use is None:
            vars(schema).pop("dump", None)
        else:
            schema.dump = in_use

    return Layer(
        "- response schema dump (dicts by hand)", lambda: setattr(schema, "dump", by_hand), restore
    )


def args_layer() -> Layer:
    """webargs parsing the query string with the view's schema, replaced by int()."""
    from flask import request
    from flask_smorest.arguments import ArgumentsMixin

    parser = ArgumentsMixin.ARGUMENTS_PARSER

    def parse(argmap: Any, req: Any = None, **kwargs: Any) -> dict[str, Any]:
        return {"limit": int(request.args["limit"])}

    return Layer(
        "- webargs query parsing (int() by hand)",
        lambda: setattr(parser, "parse", parse),
        lambda: vars(parser).pop("parse", None),
    )


def hooks_layer(app: Flask) -> Layer:
    registries: list[dict[Any, list[Any]]] = [
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
    ]
    saved = [{key: list(funcs) for key, funcs in registry.items()} for registry in registries]

    def remove() -> None:
        from mars_server.db import db

        for registry in registries:
            registry.clear()
        # The request's session must still end with it, or each request keeps a connection.
        app.teardown_request_funcs[None] = [lambda _exc: db.session.remove()]

    def restore() -> None:
        for registry, funcs in zip(registries, saved, strict=True):
            registry.clear()
            registry.update({key: list(value) for key, value in funcs.items()})

    return Layer("- MARS hooks (session.remove() kept)", remove, restore)


def paginate_layers() -> list[Layer]:
    import mars_projects.services as services

    original, via_session, via_engine = services.paginate, row_paginate(False), row_paginate(True)
    return [
        Layer(
            "- ORM entities (Core rows via session)",
            lambda: setattr(services, "paginate", via_session),
            lambda: setattr(services, "paginate", original),
        ),
        Layer(
            "- Flask-SQLAlchemy session (engine.connect)",
            lambda: setattr(services, "paginate", via_engine),
            lambda: setattr(services, "paginate", via_session),
        ),
    ]


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
    from flask.json.provider import DefaultJSONProvider
    from flask_smorest.arguments import ArgumentsMixin

    from mars_projects import services
    from mars_projects.schemas import ProjectPageSchema, ProjectQueryArgsSchema
    from mars_server.db import db
    from mars_server.http import idempotency, pagination, requests
    from mars_server.http.json import MarsJSONProvider
    from mars_server.http.serialize import compile_dump

    with app.test_request_context(URL):
        page = services.list_projects(None, {"limit": 50})  # anonymous, as in the benchmark
        schema = ProjectPageSchema()
        compiled = compile_dump(schema)
        assert compiled is not None
        dumped = schema.dump(page)
        flask_json, orjson_json = DefaultJSONProvider(app), MarsJSONProvider(app)
        flask_json.sort_keys = orjson_json.sort_keys = False
        args_schema = ProjectQueryArgsSchema()
        parser = ArgumentsMixin.ARGUMENTS_PARSER
        response = Response("{}")
        finish = app.after_request_funcs[None][0]
        costs = [
            ("marshmallow dump of the page of 50", lambda: schema.dump(page)),
            ("compiled dump of the page (serialize.py)", lambda: compiled(page)),
            ("same page as dicts by hand", lambda: hand_page_dump(None, page)),
            ("Flask's json provider: response of the page", lambda: flask_json.response(dumped)),
            ("orjson provider (http/json.py): the same", lambda: orjson_json.response(dumped)),
            ("ProjectQueryArgsSchema() (once per request before)", ProjectQueryArgsSchema),
            (
                "webargs parse of ?limit=50 (schema instance)",
                lambda: parser.parse(args_schema, location="query"),
            ),
            ("hook start_request (uuid4 request id, NUL checks)", requests.start_request),
            ("hook claim_key (a GET: returns at once)", idempotency.claim_key),
            ("hook _finish_response (etag, link, id, log)", lambda: finish(response)),
            ("pagination._scope (json + sha256)", lambda: pagination._scope("projects", {})),
            ("pagination._serializer() (built twice a page)", pagination._serializer),
            (
                "signing a cursor (_serializer().dumps)",
                lambda: pagination._serializer().dumps(["a", "b"]),
            ),
        ]
        print(f"\n{'one call of':<52}{'us':>8}")
        for name, fn in costs:
            number = 500 if "page" in name else 5000
            print(f"{name:<52}{micro_us(fn, number):>8.1f}")
        db.session.remove()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def token_app(database: Any, secret_key: str, instance: Path, redis_url: str | None) -> Flask:
    """MARS with rate limits on (never reached) and the token cache, Redis when given."""
    import bench_projects_list as bench

    import mars_server

    settings = bench.mars_settings(database, secret_key, instance)
    settings |= {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_DEFAULT": "1000000000/minute",
        "RATELIMIT_ANONYMOUS": "1000000000/minute",
        "TOKEN_CACHE_SECONDS": "600",
    }
    if redis_url:
        flush_redis(redis_url)
        settings["REDIS_URL"] = redis_url
    return mars_server.create_app(settings)


def new_token(app: Flask) -> str:
    """A user with no role and no project, and a personal access token of theirs."""
    runner = app.test_cli_runner()
    for command in (
        ["users", "create", "profile@example.org"],
        ["tokens", "create", "profile@example.org", "--scope", "projects:read"],
    ):
        result = runner.invoke(args=command)
        if result.exit_code != 0:
            raise RuntimeError(f"mars {' '.join(command)}: {result.output}")
    return str(result.output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7, help="round-robin rounds")
    parser.add_argument("--batch", type=int, default=400, help="requests per step per round")
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="also print cProfile's top N functions for MARS as it is",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="profile MARS without its response fast paths (see mars_before.py)",
    )
    parser.add_argument(
        "--token",
        action="store_true",
        help="requests with a personal access token, rate limits on (never reached)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="with --token: MARS_REDIS_URL for the limiter and the token cache (emptied)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_projects_list as bench
    import mars_before
    import raw_app

    if args.before:
        mars_before.undo_fast_paths()

    workdir = Path(tempfile.mkdtemp(prefix="mars-profile-"))
    try:
        secret_key = secrets.token_urlsafe(36)
        database = bench.Database(f"sqlite:///{workdir / 'profile.db'}")
        app = bench.build_database(database, args.rows, secret_key, workdir / "instance")
        if args.before:
            from flask.json.provider import DefaultJSONProvider

            app.json = DefaultJSONProvider(app)
            app.json.sort_keys = False  # type: ignore[attr-defined]
        raw = raw_app.create_app(database.url, secret_key).test_client()
        if args.token:
            app = token_app(database, secret_key, workdir / "instance", args.redis_url)
        mars = app.test_client()
        if args.token:
            mars.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {new_token(app)}"
            if "RateLimit" not in mars.get(URL).headers:
                raise RuntimeError("the rate limiter is not on")
        expected = mars.get(URL).get_json()
        if raw.get(URL).get_json()["items"] != expected["items"]:
            raise RuntimeError("the raw app's items differ from MARS's")

        if args.cprofile:
            batch_ms(mars, 1, warmup=200)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.batch * args.rounds):
                mars.get(URL)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.cprofile)

        print_micro(app)
        layers = [dump_layer(app), args_layer(), hooks_layer(app), *paginate_layers()]
        names = ["raw Flask + SQLAlchemy Core", "MARS as it is", *(x.name for x in layers)]
        times: list[list[float]] = [[] for _ in names]
        for round_ in range(args.rounds):
            for layer in reversed(layers):
                layer.restore()
            times[0].append(batch_ms(raw, args.batch))
            for step in range(1, len(names)):
                if step >= 2:
                    layers[step - 2].remove()
                if round_ == 0 and mars.get(URL).get_json() != expected:
                    raise RuntimeError(f"step {names[step]!r} changed the response body")
                times[step].append(batch_ms(mars, args.batch))
        for layer in reversed(layers):
            layer.restore()

        raw_ms = statistics.median(times[0])
        which = "MARS without its fast paths (--before)" if args.before else "MARS"
        print(
            f"\n{which}; {args.rows:,} projects, SQLite, in process (test client); "
            f"{args.rounds} round-robin rounds of {args.batch} requests per step"
        )
        print(f"{'step':<46}{'ms/req':>8}{'saved':>8}{'raw/this':>10}")
        for step, name in enumerate(names):
            ms = statistics.median(times[step])
            saved = ""
            if step >= 2:
                pairs = zip(times[step - 1], times[step], strict=True)
                saved = f"{statistics.median(before - after for before, after in pairs):8.3f}"
            print(f"{name:<46}{ms:>8.3f}{saved:>8}{raw_ms / ms:>10.3f}")
        rest = statistics.median(
            last - base for last, base in zip(times[-1], times[0], strict=True)
        )
        print(f"{'(rest: flask-smorest wrappers, paginate)':<46}{rest:>8.3f} ms above raw")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.token and args.redis_url:
            flush_redis(args.redis_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
