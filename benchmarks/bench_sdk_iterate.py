"""Benchmark: iterate 100,000 projects through mars_sdk against a plain requests loop.

Both variants read the very same pages from the same MARS in the same run:
``GET /api/v1/projects?limit=200`` from the first page to the last, following
``next_cursor``, anonymously (every project is made public).

- **sdk**: ``for project in client.projects.list(limit=200)``: typed
  ``Project`` models (two ``datetime``s each), the SDK's headers, request ids, retries
  and deprecation check;
- **requests**: a ``requests.Session`` loop that calls ``.json()`` on each page and
  follows ``next_cursor`` (what a careful user writes without the SDK), with dicts.

MARS is served by ``gunicorn -w 2 'mars_server:create_app()'`` on loopback, on a fresh
SQLite database (or PostgreSQL with ``--database-url``) migrated by MARS's own migrations
and loaded with ``--rows`` projects. ``--rounds`` rounds run both variants, the order
alternating. Printed: wall time and client CPU time of each variant per round, medians,
and the ratio requests/sdk of the times (the SDK's share of the plain loop's speed: aim
>= 0.9), per round and of the medians.

Usage::

    .venv/bin/python benchmarks/bench_sdk_iterate.py [--rows 100000] [--rounds 6]
        [--page 200] [--database-url postgresql://postgres@127.0.0.1:5432/mars_bench]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_projects_list import (  # noqa: E402 - the folder is put on sys.path first
    Database,
    create_postgres_database,
    drop_postgres_database,
    load_projects,
    machine,
    mars_settings,
    say,
    start_gunicorn,
    stop_server,
    wait_ready,
)

if TYPE_CHECKING:
    from collections.abc import Callable

ENDPOINT = "/api/v1/projects"
AIM = 0.9


@dataclass
class Run:
    variant: str
    round: int
    items: int
    wall_s: float
    cpu_s: float


def iterate_sdk(base_url: str, page: int) -> tuple[int, str]:
    from mars_sdk import MarsClient

    count, last = 0, ""
    with MarsClient(base_url) as client:
        for project in client.projects.list(limit=page):
            count += 1
            last = project.id
    return count, last


def iterate_requests(base_url: str, page: int) -> tuple[int, str]:
    import requests

    count, last = 0, ""
    params: dict[str, Any] = {"limit": page}
    with requests.Session() as session:
        while True:
            response = session.get(base_url + ENDPOINT, params=params, timeout=30)
            response.raise_for_status()
            body = response.json()
            for project in body["items"]:
                count += 1
                last = project["id"]
            if body["next_cursor"] is None:
                return count, last
            params = {"limit": page, "cursor": body["next_cursor"]}


VARIANTS: dict[str, Callable[[str, int], tuple[int, str]]] = {
    "sdk": iterate_sdk,
    "requests": iterate_requests,
}


def settings_for(database: Database, secret_key: str, instance: Path) -> dict[str, str]:
    return {**mars_settings(database, secret_key, instance), "PUBLIC_URL": "https://mars.example"}


def build_database(database: Database, rows: int, secret_key: str, instance: Path) -> None:
    """Migrate with MARS's migrations, load ``rows`` projects, make them all public."""
    import sqlalchemy as sa

    import mars_server
    from mars_server.db import db
    from mars_server.ops import migrations

    app = mars_server.create_app(settings_for(database, secret_key, instance))
    with app.app_context():
        migrations.upgrade()
        load_projects(rows)
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE projects SET visibility = 'public'"))
        db.engine.dispose()


def measure(base_url: str, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    expected: tuple[int, str] | None = None
    for variant in VARIANTS:  # warm-up, and both must read the same items
        answer = VARIANTS[variant](base_url, args.page)
        if expected is not None and answer != expected:
            raise SystemExit(f"{variant} read {answer}, the other variant {expected}")
        expected = answer
    assert expected is not None and expected[0] == args.rows, expected
    order = list(VARIANTS)
    for round_ in range(1, args.rounds + 1):
        for variant in order if round_ % 2 else reversed(order):
            wall, cpu = time.perf_counter(), time.process_time()
            count, _ = VARIANTS[variant](base_url, args.page)
            run = Run(variant, round_, count, time.perf_counter() - wall, time.process_time() - cpu)
            runs.append(run)
            say(
                f"  round {round_} {variant:>8}: {run.wall_s:6.2f} s wall, "
                f"{run.cpu_s:6.2f} s client CPU, {count / run.wall_s:9,.0f} items/s"
            )
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    by = {v: [r for r in runs if r.variant == v] for v in VARIANTS}
    median = {v: statistics.median(r.wall_s for r in by[v]) for v in VARIANTS}
    cpu = {v: statistics.median(r.cpu_s for r in by[v]) for v in VARIANTS}
    per_round = [q.wall_s / s.wall_s for s, q in zip(by["sdk"], by["requests"], strict=True)]
    ratio = median["requests"] / median["sdk"]
    say("")
    say("| variant | median wall s | items/s | median client CPU s | client CPU us/item |")
    say("| --- | ---: | ---: | ---: | ---: |")
    for v in VARIANTS:
        say(
            f"| {v} | {median[v]:.2f} | {args.rows / median[v]:,.0f} | {cpu[v]:.2f} "
            f"| {cpu[v] / args.rows * 1e6:.1f} |"
        )
    rounds = ", ".join(f"{r:.3f}" for r in per_round)
    say(
        f"\nspeed sdk/requests (requests time / sdk time): {ratio:.3f} of medians; "
        f"per round {rounds} (median {statistics.median(per_round):.3f}); aim >= {AIM}"
    )
    extra_us = (cpu["sdk"] - cpu["requests"]) / args.rows * 1e6
    say(f"SDK client CPU per item over the plain loop: {extra_us:.1f} us")
    return {
        "ratio_of_medians": ratio,
        "per_round": per_round,
        "median_wall_s": median,
        "median_cpu_s": cpu,
        "runs": [asdict(r) for r in runs],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--page", type=int, default=200, help="limit= of each page (max 200)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="PostgreSQL database the benchmark may own")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say(f"machine: {json.dumps(machine())}")
    with tempfile.TemporaryDirectory(prefix="mars-bench-sdk-") as folder:
        workdir = Path(folder)
        if args.database_url:
            database = create_postgres_database(args.database_url, "")
        else:
            database = Database(f"sqlite:///{workdir / 'mars.db'}")
        secret_key = secrets.token_urlsafe(48)
        server = None
        try:
            build_database(database, args.rows, secret_key, workdir / "instance")
            settings = settings_for(database, secret_key, workdir / "instance")
            env = {f"MARS_{k}": v for k, v in settings.items()}
            server = start_gunicorn(
                "MARS", "mars_server:create_app()", env, args.workers, workdir / "mars.log"
            )
            wait_ready(server)
            say(f"iterating {args.rows:,} projects, pages of {args.page}, {args.rounds} rounds")
            figures = report(measure(server.url, args), args)
        finally:
            if server is not None:
                stop_server(server)
            if database.postgres_name:
                with contextlib.suppress(Exception):
                    drop_postgres_database(database)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
