"""Benchmark 50 projects with their members: one GraphQL query against the REST calls.

The same data, fetched two ways from the same MARS (``gunicorn -w 2`` on loopback, a
database brought to head with MARS's migrations, ``--projects`` projects with 1 to 3
members each, all visible to the caller):

- GraphQL: ``POST /api/v1/graphql`` with ``projects(first: 50) { nodes { ... members { ... } } }``;
- REST: ``GET /api/v1/projects?limit=50``, then ``GET /api/v1/projects/{id}/members`` for
  each of the 50 (what a client of REST alone must do), on one keep-alive connection.

Both run in turns (the order alternating) for ``--rounds`` rounds of ``--repeat`` fetches
each; the script checks that both fetched the same projects and members, and prints the
median time per fetch of each and the ratio GraphQL / REST, with the SQL statements the
GraphQL fetch costs (counted in process, through Flask's test client).

Usage::

    .venv/bin/python benchmarks/bench_graphql.py [--rounds 5] [--repeat 20]
        [--database-url postgresql://postgres@127.0.0.1:5432/mars_bench]

Needs ``gunicorn`` (the dev extra has it). With ``--database-url`` the named PostgreSQL
database is dropped, created anew and dropped again at the end; without it a SQLite file in
a temporary folder is used.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_projects_list as base  # noqa: E402  (the shared database and server helpers)

PAGE = 50
QUERY = """
query($first: Int!) {
  projects(first: $first) {
    nodes { id slug name visibility createdAt members { userId role addedAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def load(app: Any, projects: int) -> tuple[str, list[str]]:
    """``projects`` projects owned by one person, with 0 to 2 more members each; returns
    the owner's token (every scope) and the other members' ids."""
    from mars_projects import services
    from mars_server.db import db
    from mars_server.testing import make_token, make_user

    owner = make_user(app, display_name="Owner")
    owner_id = owner.id
    others = [make_user(app, display_name=f"Member {n}").id for n in range(2)]
    token = make_token(app, owner)
    with app.app_context():
        for n in range(projects):
            project = services.create_project(owner_id, {"slug": f"p-{n}", "name": f"P {n}"})
            for other in others[: n % 3]:
                db.session.add(
                    services.ProjectMember(project_id=project.id, user_id=other, role="member")
                )
            db.session.commit()
    return token, others


def fetch_graphql(session: requests.Session, url: str) -> dict[str, list[tuple[str, str]]]:
    answer = session.post(
        f"{url}/api/v1/graphql", json={"query": QUERY, "variables": {"first": PAGE}}
    )
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body
    return {
        p["id"]: sorted((m["userId"], m["role"].lower()) for m in p["members"])
        for p in body["data"]["projects"]["nodes"]
    }


def fetch_rest(session: requests.Session, url: str) -> dict[str, list[tuple[str, str]]]:
    page = session.get(f"{url}/api/v1/projects", params={"limit": PAGE})
    page.raise_for_status()
    found = {}
    for project in page.json()["items"]:
        members = session.get(f"{url}/api/v1/projects/{project['id']}/members")
        members.raise_for_status()
        found[project["id"]] = sorted((m["user_id"], m["role"]) for m in members.json()["items"])
    return found


def statements_of_one_query(app: Any, token: str) -> int:
    import sqlalchemy as sa

    from mars_server.db import db

    seen: list[str] = []
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        client = app.test_client()
        client.post(
            "/api/v1/graphql",
            json={"query": QUERY, "variables": {"first": PAGE}},
            headers={"Authorization": f"Bearer {token}"},
        )
    return len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=PAGE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="fetches per way per round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="a PostgreSQL database the benchmark may own")
    args = parser.parse_args(argv)

    import mars_server
    from mars_server.ops import migrations

    workdir = Path(tempfile.mkdtemp(prefix="mars-bench-graphql-"))
    if args.database_url:
        database = base.create_postgres_database(args.database_url, "")
    else:
        database = base.Database(f"sqlite:///{workdir / 'bench.db'}")
    secret_key = secrets.token_urlsafe(48)
    settings = base.mars_settings(database, secret_key, workdir / "instance")
    app = mars_server.create_app(settings)
    with app.app_context():
        migrations.upgrade()
    token, _others = load(app, args.projects)
    statements = statements_of_one_query(app, token)
    env = {"MARS_" + k: v for k, v in settings.items()}
    server = base.start_gunicorn(
        "MARS", "mars_server:create_app()", env, args.workers, workdir / "mars.log"
    )
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert fetch_graphql(session, server.url) == fetch_rest(session, server.url)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ways = {"graphql": fetch_graphql, "rest": fetch_rest}
        per_round: dict[str, list[float]] = {name: [] for name in ways}
        for round_ in range(args.rounds):
            order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for name in order:
                started = time.perf_counter()
                for _ in range(args.repeat):
                    ways[name](session, server.url)
                per_round[name].append((time.perf_counter() - started) / args.repeat * 1000)
        graphql_ms = statistics.median(per_round["graphql"])
        rest_ms = statistics.median(per_round["rest"])
        base.say(f"{database.kind}, {args.projects} projects, gunicorn -w {args.workers}")
        for name in ways:
            rounds = ", ".join(f"{ms:.1f}" for ms in per_round[name])
            base.say(f"  {name:8} ms per fetch of 50 projects with members: {rounds}")
        base.say(
            f"  median: GraphQL {graphql_ms:.1f} ms (1 request), "
            f"REST {rest_ms:.1f} ms (51 requests)"
        )
        base.say(f"  GraphQL / REST: {graphql_ms / rest_ms:.3f}")
        base.say(f"  SQL statements of the GraphQL fetch (token, page, members): {statements}")
    finally:
        base.stop_server(server)
        if database.postgres_name:
            base.drop_postgres_database(database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
