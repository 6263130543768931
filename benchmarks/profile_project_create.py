"""Where MARS's time goes on ``POST /api/v1/projects``, part by part.

In process, through Flask's test client, over a fresh SQLite database brought to head by
MARS's migrations (or PostgreSQL with ``--database-url .../bench_NAME``), with a user and a
real personal access token:

1. **Totals.** MARS, and ``raw_create_app.py`` in its three modes (``project``, ``outbox``,
   ``all``), are timed round-robin, ``--batch`` requests each per round over ``--rounds``
   rounds (other load falls on all alike); medians of ms per request.
2. **Parts.** MARS again, with timers wrapped around the functions each request goes
   through (monkeypatched in this process only; no file changes): the token check, the
   argument parsing, the service and, inside it, the ORM flushes, the audience query, the
   event and audit entry, the commit; the response; the request hooks. It also counts the
   SQL statements and the time spent in the database driver. Times are inclusive, per
   request, medians over rounds; the wrappers add about 1 µs each.
3. ``--cprofile N``: the top N functions of a cProfile run, by internal time.

Usage::

    .venv/bin/python benchmarks/profile_project_create.py [--rounds 7] [--batch 200]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import itertools
import pstats
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_projects_list import (  # the list benchmark's tools, shared
    Database,
    create_postgres_database,
    drop_postgres_database,
    mars_settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flask.testing import FlaskClient

URL = "/api/v1/projects"
_slugs = itertools.count()


def post(client: FlaskClient, headers: dict[str, str]) -> None:
    slug = f"p-{next(_slugs)}"
    response = client.post(
        URL,
        json={"slug": slug, "name": f"Project {slug}", "description": "Created by the benchmark."},
        headers=headers,
    )
    if response.status_code != 201:
        raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:300]}")


def batch_ms(client: FlaskClient, headers: dict[str, str], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        post(client, headers)
    return (time.perf_counter() - started) / requests * 1000


# -- timers ----------------------------------------------------------------------------------


class Timers:
    """Inclusive seconds and calls per label, from wrappers put around functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.order: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Replace ``owner.name`` (a module's, a class's or an instance's) by a timed call."""
        own = vars(owner)
        had, before = name in own, own.get(name)
        original = getattr(owner, name)
        seconds, calls = self.seconds, self.calls
        if label not in self.order:
            self.order.append(label)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started
                calls[label] += 1

        setattr(owner, name, timed)

        def undo() -> None:
            if had:
                setattr(owner, name, before)
            else:
                delattr(owner, name)

        self._undo.append(undo)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def undo(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def timed_parts(
    tokens: Any,
    blueprint: Any,
    services: Any,
    project_events: Any,
    outbox: Any,
    audit_records: Any,
    sa: Any,
    views: Any,
    mars_requests: Any,
    mars_app: Any,
) -> list[tuple[Any, str, str]]:
    """What is timed, in the order it is printed (indented: inside the line above)."""
    return [
        (mars_requests, "start_request", "hook start_request (request id, NUL checks)"),
        (tokens, "actor_from_request", "token check (SELECT token, user, roles)"),
        (blueprint.ARGUMENTS_PARSER, "parse", "argument parsing (ProjectSchema load)"),
        (services, "create_project", "service create_project"),
        (sa.orm.Session, "flush", "  ORM flushes (INSERT project, then member)"),
        (project_events, "member_ids", "  audience: SELECT members"),
        (project_events, "emit", "  emit(): payload dump, outbox row, audit"),
        (outbox, "_record", "    audit entry (hook, redact, row)"),
        (audit_records, "redact", "      redact details"),
        (sa.orm.Session, "commit", "  commit (flushes outbox + audit INSERTs)"),
        (views, "send_etag", "send_etag"),
        (mars_app, "_finish_response", "hook _finish_response"),
    ]


def instrument(app: Any, timers: Timers) -> Callable[[], None]:
    """Wrap the functions a ``POST /api/v1/projects`` goes through; return the undo."""
    import sqlalchemy as sa

    import mars_projects.events as project_events
    import mars_projects.services as services
    import mars_projects.views as views
    import mars_server.audit.records as audit_records
    import mars_server.auth.tokens as tokens
    import mars_server.events.outbox as outbox
    from mars_server import app as mars_app
    from mars_server.db import db
    from mars_server.http import requests as mars_requests
    from mars_server.http.blueprint import Blueprint

    for owner, name, label in timed_parts(
        tokens,
        Blueprint,
        services,
        project_events,
        outbox,
        audit_records,
        sa,
        views,
        mars_requests,
        mars_app,
    ):
        timers.wrap(owner, name, label)

    # The hooks were registered as function objects: re-register the wrapped ones.
    before = app.before_request_funcs[None]
    after = app.after_request_funcs[None]
    saved = (list(before), list(after))
    before[:] = [
        mars_requests.start_request if f.__name__ == "start_request" else f for f in before
    ]
    after[:] = [mars_app._finish_response if f.__name__ == "_finish_response" else f for f in after]

    with app.app_context():
        engine = db.engine
    sql = {"n": 0, "t": 0.0}
    starts: list[float] = []

    def before_cursor(*_args: Any) -> None:
        starts.append(time.perf_counter())

    def after_cursor(*_args: Any) -> None:
        sql["t"] += time.perf_counter() - starts.pop()
        sql["n"] += 1

    sa.event.listen(engine, "before_cursor_execute", before_cursor)
    sa.event.listen(engine, "after_cursor_execute", after_cursor)
    timers.sql = sql  # type: ignore[attr-defined]

    def undo() -> None:
        sa.event.remove(engine, "before_cursor_execute", before_cursor)
        sa.event.remove(engine, "after_cursor_execute", after_cursor)
        before[:], after[:] = saved
        timers.undo()

    return undo


# -- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[Database]:
    workdir = Path(tempfile.mkdtemp(prefix="mars-profile-create-"))
    made: Database | None = None
    try:
        if args.database_url:
            name = urlsplit(args.database_url).path.lstrip("/")
            if not name.startswith("bench_"):
                raise SystemExit(f"the database name must start with 'bench_' (got {name!r})")
            made = create_postgres_database(args.database_url, "")
        else:
            made = Database(f"sqlite:///{workdir / 'profile.db'}")
        made.workdir = workdir  # type: ignore[attr-defined]
        yield made
    finally:
        if made is not None and made.postgres_name:
            drop_postgres_database(made)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200, help="requests per app per round")
    parser.add_argument("--cprofile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)

    import raw_create_app

    import mars_server
    from mars_server.db import db
    from mars_server.ops import migrations
    from mars_server.testing import make_token, make_user

    with database(args) as made:
        workdir: Path = made.workdir  # type: ignore[attr-defined]
        app = mars_server.create_app(
            mars_settings(made, secrets.token_urlsafe(36), workdir / "instance")
        )
        with app.app_context():
            migrations.upgrade()
        user = make_user(app)
        token = make_token(app, user, ["projects:write"])
        mars = app.test_client()
        auth = {"Authorization": f"Bearer {token}"}
        clients: dict[str, tuple[FlaskClient, dict[str, str]]] = {"MARS": (mars, auth)}
        for mode in raw_create_app.MODES:
            raw = raw_create_app.create_app(mode, made.url, str(user.id))
            clients[f"raw {mode}"] = (raw.test_client(), {})
        for client, headers in clients.values():  # warm-up
            batch_ms(client, headers, 30)

        totals: dict[str, list[float]] = defaultdict(list)
        for round_ in range(args.rounds):
            names = list(clients)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                totals[name].append(batch_ms(*clients[name], args.batch))
        print(
            f"\nPOST {URL} in process ({made.kind}), ms per request, median of "
            f"{args.rounds} rounds of {args.batch}:"
        )
        med = {name: statistics.median(values) for name, values in totals.items()}
        for name, value in med.items():
            print(
                f"  {name:<12}{value:8.3f}   MARS/this time {med['MARS'] / value:5.2f}x"
                f"   rounds {', '.join(f'{v:.2f}' for v in totals[name])}"
            )

        timers = Timers()
        undo = instrument(app, timers)
        parts: dict[str, list[float]] = defaultdict(list)
        sql_n: list[float] = []
        sql_t: list[float] = []
        whole: list[float] = []
        try:
            batch_ms(mars, auth, 30)
            for _ in range(args.rounds):
                timers.reset()
                timers.sql.update(n=0, t=0.0)  # type: ignore[attr-defined]
                whole.append(batch_ms(mars, auth, args.batch))
                for label, seconds in timers.seconds.items():
                    parts[label].append(seconds * 1000 / args.batch)
                sql_n.append(timers.sql["n"] / args.batch)  # type: ignore[attr-defined]
                sql_t.append(timers.sql["t"] * 1000 / args.batch)  # type: ignore[attr-defined]
        finally:
            undo()
        print(
            f"\nMARS, part by part (inclusive ms per request, medians; whole request with "
            f"the timers {statistics.median(whole):.3f} ms):"
        )
        for label in timers.order:
            if label in parts:
                print(f"  {label:<52}{statistics.median(parts[label]):8.3f}")
        print(f"  {'(the same request with no timers, above)':<52}{med['MARS']:8.3f}")
        print(
            f"  {'SQL statements per request / ms in the driver':<52}"
            f"{statistics.median(sql_n):8.1f} / {statistics.median(sql_t):.3f}"
        )

        if args.cprofile:
            profile = cProfile.Profile()
            profile.enable()
            batch_ms(mars, auth, args.batch)
            profile.disable()
            print(f"\ncProfile of {args.batch} MARS requests, top {args.cprofile} by own time:")
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.cprofile)
        with app.app_context():
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
