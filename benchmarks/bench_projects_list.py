"""Benchmark ``GET /api/v1/projects?limit=50``: MARS against raw Flask + SQLAlchemy.

Two measurements, in one run:

1. HTTP throughput. A fresh database is brought to head with MARS's own migrations and
   loaded with ``--rows`` projects. MARS (``gunicorn 'mars_server:create_app()'``) and a
   hand-written Flask + SQLAlchemy Core app doing the same keyset query
   (``benchmarks/raw_app.py``) are served side by side by ``gunicorn -w 2`` on loopback,
   with, unless ``--no-before``, MARS without its response fast paths
   (``benchmarks/mars_before.py``), and ``wrk --latency`` drives each in turn, the order
   rotating over ``--rounds`` rounds. Prints req/s, p50 and p99 per round, their medians
   and the ratios to raw, and the server CPU time per request (from ``/proc``), whose
   ratio other load on the machine barely moves.
2. Deep pages. A second database gets ``--deep-rows`` projects; through the full MARS stack
   (Flask's test client, in process) the first page is timed against a page whose cursor
   points at 99% depth, and likewise for the raw app and for the bare SQL query.

Usage::

    .venv/bin/python benchmarks/bench_projects_list.py [--rows 100000]
        [--deep-rows 1000000] [--duration 10] [--rounds 5] [--no-before]
        [--database-url postgresql://postgres@127.0.0.1:5432/mars_bench]

Needs ``wrk`` (``apt-get install wrk``) and ``gunicorn`` (``pip install gunicorn``). With
``--database-url`` the named PostgreSQL database and ``<name>_deep`` are dropped, created
anew and dropped again at the end; without it SQLite files in a temporary folder are used.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flask import Flask

HERE = Path(__file__).resolve().parent
ENDPOINT = "/api/v1/projects"
PAGE = 50
BATCH = 10_000
AIM_RATIO = 0.9
AIM_DEEP = 1.1
CURSOR_SALT = "mars.cursor.v1"
FORBIDDEN_DATABASES = frozenset({"postgres", "test", "template0", "template1"})
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def say(message: str = "") -> None:
    print(message, flush=True)


# -- prerequisites -------------------------------------------------------------------------


def missing_tools() -> list[str]:
    problems = []
    if shutil.which("wrk") is None:
        problems.append(
            "wrk is not installed. On Debian/Ubuntu: "
            "`sudo apt-get update && sudo apt-get install -y wrk`."
        )
    if importlib.util.find_spec("gunicorn") is None:
        problems.append(
            f"gunicorn is not installed in {sys.executable}: "
            f"`{sys.executable} -m pip install gunicorn`."
        )
    return problems


# -- databases -----------------------------------------------------------------------------


@dataclass
class Database:
    """A database the benchmark owns: created empty, removed at the end."""

    url: str
    postgres_name: str | None = None

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.postgres_name else "SQLite"


def _postgres_admin(url: str) -> Any:
    import psycopg

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    admin = urlunsplit(parts._replace(path="/postgres"))
    return psycopg.connect(admin, autocommit=True)


def create_postgres_database(base_url: str, suffix: str) -> Database:
    from psycopg import sql

    parts = urlsplit(base_url)
    name = parts.path.lstrip("/") + suffix
    if not name or name in FORBIDDEN_DATABASES or name.startswith("template"):
        raise SystemExit(
            f"refusing to drop and recreate database {name!r}: name one the "
            "benchmark may own, e.g. .../mars_bench"
        )
    with _postgres_admin(base_url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return Database(urlunsplit(parts._replace(path="/" + name)), postgres_name=name)


def drop_postgres_database(database: Database) -> None:
    from psycopg import sql

    assert database.postgres_name is not None
    with _postgres_admin(database.url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.postgres_name)
            )
        )


def mars_settings(database: Database, secret_key: str, instance_path: Path) -> dict[str, str]:
    return {
        "ENV": "production",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database.url,
        "INSTANCE_PATH": str(instance_path),
        "LOG_LEVEL": "WARNING",
        # Production mode sends mail over SMTP by default; the benchmark sends none.
        "MAIL_BACKEND": "files",
        "PUBLIC_URL": "https://mars.bench.example",
        # These benchmarks measure MARS against the same runs as before rate limits existed
        # (a per-process limit would also refuse wrk); bench_production.py turns them on.
        "RATELIMIT_ENABLED": "false",
    }


def build_database(database: Database, rows: int, secret_key: str, instance_path: Path) -> Flask:
    """Migrate ``database`` to head with MARS's migrations and load ``rows`` projects."""
    import mars_server
    from mars_server.ops import migrations

    app = mars_server.create_app(mars_settings(database, secret_key, instance_path))
    with app.app_context():
        migrations.upgrade()
        started = time.perf_counter()
        load_projects(rows)
        say(
            f"  loaded {rows:,} projects into {database.kind} in "
            f"{time.perf_counter() - started:.1f} s"
        )
    return app


def load_projects(rows: int) -> None:
    """Bulk-insert ``rows`` projects in batches, in one transaction, ids made like the app's."""
    import sqlalchemy as sa

    from mars_server.db import db, new_id, utcnow

    table = db.metadata.tables["projects"]
    visibilities = ("public", "private")
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # no fsync while loading; pysqlite has not opened a transaction yet
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        for start in range(0, rows, BATCH):
            now = utcnow()
            conn.execute(
                table.insert(),
                [
                    {
                        "id": new_id("prj"),
                        "slug": f"project-{i}",
                        "name": f"Project {i}",
                        "description": f"Benchmark project number {i}.",
                        "visibility": visibilities[i % 2],
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                    for i in range(start, min(start + BATCH, rows))
                ],
            )
        conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            conn.commit()
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.text("ANALYZE" if sqlite else "VACUUM ANALYZE projects"))
        count = conn.scalar(sa.select(sa.func.count()).select_from(table))
    if count != rows:
        raise RuntimeError(f"loaded {count} projects, expected {rows}")


# -- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    name: str,
    app_spec: str,
    env: dict[str, str],
    workers: int,
    log: Path,
    pythonpath: Path | None = None,
) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    if pythonpath:
        command += ["--pythonpath", str(pythonpath)]
    command.append(app_spec)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARS_", "RAW_"))}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, f"http://127.0.0.1:{port}", process, log)


def stop_server(server: Server) -> None:
    """Stop gunicorn and its workers: they are alone in the process group it leads."""
    if server.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=5)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return json.load(response)


def wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.log.read_text()[-3000:]}")
        try:
            get_json(f"{server.url}{ENDPOINT}?limit=1")
        except OSError:
            time.sleep(0.2)
        else:
            return
    raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s")


def check_same_answers(apps: list[Server], raw: Server) -> None:
    """Every app must serve raw's items, on the first page and through the cursor."""
    pages = {}
    for server in [*apps, raw]:
        first = get_json(f"{server.url}{ENDPOINT}?limit={PAGE}")
        second = get_json(f"{server.url}{ENDPOINT}?limit={PAGE}&cursor={first['next_cursor']}")
        for page in (first, second):
            if set(page) != {"items", "next_cursor"} or len(page["items"]) != PAGE:
                raise RuntimeError(f"{server.name}: unexpected page shape: {sorted(page)}")
        if second["items"][0]["id"] <= first["items"][-1]["id"]:
            raise RuntimeError(f"{server.name}: the second page does not follow the first")
        pages[server.name] = (first["items"], second["items"])
    for server in apps:
        if pages[server.name] != pages[raw.name]:
            raise RuntimeError(
                f"{server.name} and the raw app disagree on the items of a page:\n"
                f"{pages[server.name][0][0]}\n{pages[raw.name][0][0]}"
            )


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class WrkResult:
    app: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: dict[str, int] = field(default_factory=dict)
    #: CPU time the server (gunicorn master and workers) spent per request served.
    cpu_ms_per_request: float | None = None


def _latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {percentile}% latency in wrk's output:\n{output}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str, app: str, round_: int) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if not rate or not total:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors: dict[str, int] = {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        for kind, count in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            if int(count):
                errors[kind] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors["non-2xx"] = int(non_2xx.group(1))
    return WrkResult(
        app,
        round_,
        float(rate.group(1)),
        _latency_ms(output, "50"),
        _latency_ms(output, "99"),
        int(total.group(1)),
        errors,
    )


def server_cpu_seconds(server: Server) -> float | None:
    """User + system CPU of every process in the server's group (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == server.process.pid:  # process group id
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def run_wrk(url: str, duration: int, threads: int, connections: int) -> str:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    )
    return done.stdout


@dataclass
class AppRatios:
    """One app against raw, from the same run."""

    #: median req/s of the app / median req/s of raw (aim >= 0.9)
    rps: float
    #: the app's req/s / raw's, round by round
    per_round: list[float]
    #: raw's server CPU per request / the app's: what its layers cost, whatever the load
    cpu: float | None
    p50: float
    p99: float


@dataclass
class HttpSummary:
    rounds: list[WrkResult]
    median: dict[str, dict[str, float]]
    #: per app other than raw
    ratios: dict[str, AppRatios]


def bench_http(apps: list[Server], raw: Server, args: argparse.Namespace) -> HttpSummary:
    """wrk on each app and raw in turn; the order rotates from round to round."""
    path = f"{ENDPOINT}?limit={PAGE}"
    servers = [*apps, raw]
    say(f"  warm-up: {args.warmup} s each")
    for server in servers:
        run_wrk(server.url + path, args.warmup, args.threads, args.connections)
    results: list[WrkResult] = []
    for round_ in range(1, args.rounds + 1):
        shift = (round_ - 1) % len(servers)
        for server in servers[shift:] + servers[:shift]:
            cpu_before = server_cpu_seconds(server)
            output = run_wrk(server.url + path, args.duration, args.threads, args.connections)
            cpu_after = server_cpu_seconds(server)
            result = parse_wrk(output, server.name, round_)
            if cpu_before is not None and cpu_after is not None and result.requests:
                result.cpu_ms_per_request = (cpu_after - cpu_before) * 1000 / result.requests
            results.append(result)
            cpu = (
                f"  cpu {result.cpu_ms_per_request:5.2f} ms/req"
                if result.cpu_ms_per_request is not None
                else ""
            )
            say(
                f"  round {round_} {server.name:<7} {result.requests_per_second:9.1f} req/s  "
                f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms{cpu}"
                + (f"  errors {result.errors}" if result.errors else "")
            )
    keys = ["requests_per_second", "p50_ms", "p99_ms"]
    if all(r.cpu_ms_per_request is not None for r in results):
        keys.append("cpu_ms_per_request")
    median = {
        server.name: {
            key: statistics.median(getattr(r, key) for r in results if r.app == server.name)
            for key in keys
        }
        for server in servers
    }

    def rps(name: str, round_: int) -> float:
        return next(r.requests_per_second for r in results if r.round == round_ and r.app == name)

    base = median[raw.name]
    ratios = {}
    for server in apps:
        m = median[server.name]
        ratios[server.name] = AppRatios(
            rps=m["requests_per_second"] / base["requests_per_second"],
            per_round=[rps(server.name, n) / rps(raw.name, n) for n in range(1, args.rounds + 1)],
            cpu=(
                base["cpu_ms_per_request"] / m["cpu_ms_per_request"]
                if "cpu_ms_per_request" in m
                else None
            ),
            p50=m["p50_ms"] / base["p50_ms"],
            p99=m["p99_ms"] / base["p99_ms"],
        )
    return HttpSummary(results, median, ratios)


# -- deep pages ----------------------------------------------------------------------------


@dataclass
class DeepRow:
    path: str
    first_ms: float
    deep_ms: float

    @property
    def ratio(self) -> float:
        return self.deep_ms / self.first_ms


def _time_pair(
    first: Callable[[], object], deep: Callable[[], object], repeats: int, warmup: int
) -> tuple[float, float]:
    """Median milliseconds of ``first`` and ``deep``, called alternately."""
    for _ in range(warmup):
        first()
        deep()
    first_ns: list[int] = []
    deep_ns: list[int] = []
    for _ in range(repeats):
        for fetch, times in ((first, first_ns), (deep, deep_ns)):
            started = time.perf_counter_ns()
            fetch()
            times.append(time.perf_counter_ns() - started)
    return statistics.median(first_ns) / 1e6, statistics.median(deep_ns) / 1e6


def _expect_page(response: Any, after_id: str | None) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:500]}")
    items = response.get_json()["items"]
    if len(items) != PAGE or (after_id is not None and items[0]["id"] <= after_id):
        raise RuntimeError("the page is not the one asked for")


def _expect_sorted(response: Any, after: tuple[str, str] | None) -> None:
    """A page of ``?sort=-name``: descending by (name, id), below ``after``."""
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:500]}")
    keys = [(item["name"], item["id"]) for item in response.get_json()["items"]]
    if len(keys) != PAGE or keys != sorted(keys, reverse=True):
        raise RuntimeError("the sorted page is not in order")
    if after is not None and keys[0] >= after:
        raise RuntimeError("the sorted page is not the one asked for")


def bench_deep(
    app: Flask, database: Database, rows: int, secret_key: str, repeats: int, warmup: int
) -> tuple[int, list[DeepRow]]:
    """First page against a page at 99% depth: MARS, the raw app, and the SQL alone."""
    import raw_app
    import sqlalchemy as sa
    from itsdangerous import URLSafeSerializer

    from mars_server.config import normalise_database_url
    from mars_server.db import db

    depth = int(rows * 0.99)
    with app.app_context():
        table = db.metadata.tables["projects"]
        deep_id = db.session.scalar(
            sa.select(table.c.id).order_by(table.c.id).limit(1).offset(depth - 1)
        )
        # The same depth in a sorted list: by name, descending (the id breaks ties).
        deep_sorted = db.session.execute(
            sa.select(table.c.name, table.c.id)
            .order_by(table.c.name.desc(), table.c.id.desc())
            .limit(1)
            .offset(depth - 1)
        ).one()
        db.session.remove()
    assert deep_id is not None
    url = f"{ENDPOINT}?limit={PAGE}"

    mars = app.test_client()
    first_page = mars.get(url)
    _expect_page(first_page, None)
    signer = URLSafeSerializer(secret_key, salt=CURSOR_SALT)
    scope, _ = signer.loads(first_page.get_json()["next_cursor"])
    mars_deep = f"{url}&cursor={signer.dumps([scope, deep_id])}"
    _expect_page(mars.get(mars_deep), deep_id)

    sorted_url = f"{url}&sort=-name"
    sorted_first = mars.get(sorted_url)
    _expect_sorted(sorted_first, None)
    sorted_scope = signer.loads(sorted_first.get_json()["next_cursor"])[0]
    mars_sorted_deep = f"{sorted_url}&cursor={signer.dumps([sorted_scope, *deep_sorted])}"
    _expect_sorted(mars.get(mars_sorted_deep), tuple(deep_sorted))
    # Both with a cursor to check: the second page against the deep one measures the depth
    # alone (the first page has no cursor to verify).
    mars_sorted_second = f"{sorted_url}&cursor={sorted_first.get_json()['next_cursor']}"

    raw = raw_app.create_app(database.url, secret_key).test_client()
    raw_deep = f"{url}&cursor={URLSafeSerializer(secret_key, salt='raw.cursor.v1').dumps(deep_id)}"
    _expect_page(raw.get(raw_deep), deep_id)
    if raw.get(raw_deep).get_json()["items"] != mars.get(mars_deep).get_json()["items"]:
        raise RuntimeError("MARS and the raw app disagree on the deep page")

    engine = sa.create_engine(normalise_database_url(database.url))
    stmt = (
        sa.select(*raw_app.COLUMNS)
        .where(raw_app.projects.c.visibility == "public")
        .order_by(raw_app.projects.c.id)
        .limit(PAGE + 1)
    )
    rows_out = []
    with engine.connect() as conn:

        def sql(after: str | None) -> Callable[[], object]:
            query = stmt if after is None else stmt.where(raw_app.projects.c.id > after)
            return lambda: conn.execute(query).all()

        columns = raw_app.projects.c
        by_name = (
            sa.select(*raw_app.COLUMNS)
            .where(columns.visibility == "public")
            .order_by(columns.name.desc(), columns.id.desc())
            .limit(PAGE + 1)
        )

        def sql_sorted(after: tuple[str, str] | None) -> Callable[[], object]:
            query = by_name
            if after is not None:
                query = by_name.where(sa.tuple_(columns.name, columns.id) < sa.tuple_(*after))
            return lambda: conn.execute(query).all()

        for name, first, deep in (
            ("MARS (test client)", lambda: mars.get(url), lambda: mars.get(mars_deep)),
            ("raw (test client)", lambda: raw.get(url), lambda: raw.get(raw_deep)),
            ("SQL only", sql(None), sql(deep_id)),
            (
                "MARS sort=-name",
                lambda: mars.get(sorted_url),
                lambda: mars.get(mars_sorted_deep),
            ),
            (
                "MARS sort=-name p2",
                lambda: mars.get(mars_sorted_second),
                lambda: mars.get(mars_sorted_deep),
            ),
            ("SQL sort=-name", sql_sorted(None), sql_sorted(tuple(deep_sorted))),
        ):
            first_ms, deep_ms = _time_pair(first, deep, repeats, warmup)
            rows_out.append(DeepRow(name, first_ms, deep_ms))
            say(
                f"  {name:<19} first {first_ms:7.3f} ms  deep {deep_ms:7.3f} ms  "
                f"deep/first {deep_ms / first_ms:5.2f}"
            )
    engine.dispose()
    return depth, rows_out


# -- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg": os.getloadavg(),
    }


def print_http(summary: HttpSummary, args: argparse.Namespace, kind: str) -> None:
    say()
    say(
        f"GET {ENDPOINT}?limit={PAGE} over {args.rows:,} projects ({kind}), "
        f"gunicorn -w {args.workers}, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, {args.rounds} interleaved rounds"
    )
    say(
        f"{'app':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'cpu ms/req':>12}"
        "   (medians of rounds)"
    )
    for name, figures in summary.median.items():
        cpu = figures.get("cpu_ms_per_request")
        say(
            f"{name:<8}{figures['requests_per_second']:>10.1f}{figures['p50_ms']:>10.2f}"
            f"{figures['p99_ms']:>10.2f}" + (f"{cpu:>12.2f}" if cpu is not None else "")
        )
    for name, ratio in summary.ratios.items():
        verdict = "meets" if ratio.rps >= AIM_RATIO else "BELOW"
        say(
            f"{name}/raw req/s: {ratio.rps:.3f} ({verdict} the {AIM_RATIO} aim; goal 1.0); "
            f"per round: {', '.join(f'{r:.3f}' for r in ratio.per_round)} "
            f"(median {statistics.median(ratio.per_round):.3f})"
        )
        if ratio.cpu is not None:
            say(
                f"  raw/{name} server CPU per request: {ratio.cpu:.3f} "
                "(the same ratio, insensitive to other load on the machine)"
            )
        say(f"  latency {name}/raw: p50 {ratio.p50:.3f}x, p99 {ratio.p99:.3f}x")


def print_deep(depth: int, rows: list[DeepRow], args: argparse.Namespace, kind: str) -> None:
    say()
    say(
        f"First page vs. page at 99% depth (after row {depth:,} of {args.deep_rows:,}, "
        f"{kind}), median of {args.deep_repeats} alternating fetches"
    )
    say(f"{'path':<20}{'first ms':>10}{'deep ms':>10}{'deep/first':>12}")
    for row in rows:
        say(f"{row.path:<20}{row.first_ms:>10.3f}{row.deep_ms:>10.3f}{row.ratio:>12.3f}")
    mars = rows[0].ratio
    verdict = "meets" if mars <= AIM_DEEP else "BELOW"
    say(f"MARS deep/first: {mars:.3f} ({verdict} the 'within {AIM_DEEP}x' aim)")


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=100_000,
        help="projects behind the HTTP benchmark (default 100000)",
    )
    parser.add_argument(
        "--deep-rows",
        type=int,
        default=1_000_000,
        help="projects behind the deep-page benchmark (default 1000000)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per app")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per app")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument(
        "--deep-repeats",
        type=int,
        default=200,
        help="timed fetches of each page in the deep-page benchmark",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="use PostgreSQL: postgresql://user@127.0.0.1:5432/NAME; the "
        "databases NAME and NAME_deep are dropped and recreated",
    )
    parser.add_argument(
        "--no-before",
        action="store_true",
        help="do not also serve MARS without its response fast paths (mars_before.py)",
    )
    parser.add_argument("--skip-http", action="store_true", help="only the deep-page part")
    parser.add_argument("--skip-deep", action="store_true", help="only the HTTP part")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, SQLite files)"
    )
    args = parser.parse_args(argv)
    if args.rows < 2 * PAGE or args.deep_rows < 200 * PAGE:
        parser.error(f"need --rows >= {2 * PAGE} and --deep-rows >= {200 * PAGE}")
    return args


def new_database(args: argparse.Namespace, workdir: Path, name: str) -> Database:
    if args.database_url:
        return create_postgres_database(args.database_url, "" if name == "http" else "_deep")
    return Database(f"sqlite:///{workdir / f'{name}.db'}")


@contextlib.contextmanager
def cleanup_on_term() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the ``finally`` blocks stop the servers."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_http and (problems := missing_tools()):
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    workdir = Path(tempfile.mkdtemp(prefix="mars-bench-"))
    secret_key = secrets.token_urlsafe(36)  # 48 characters
    report: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    say(f"machine: {report['machine']}")
    say(f"work folder: {workdir}")
    databases: list[Database] = []
    servers: list[Server] = []
    started = time.monotonic()
    try:
        with cleanup_on_term():
            if not args.skip_http:
                database = new_database(args, workdir, "http")
                databases.append(database)
                say(f"HTTP benchmark: building {database.kind} database")
                build_database(database, args.rows, secret_key, workdir / "instance-http")
                env = {
                    "MARS_" + k: v
                    for k, v in mars_settings(
                        database, secret_key, workdir / "instance-gunicorn"
                    ).items()
                }
                servers.append(
                    start_gunicorn(
                        "MARS", "mars_server:create_app()", env, args.workers, workdir / "mars.log"
                    )
                )
                if not args.no_before:
                    servers.append(
                        start_gunicorn(
                            "before",
                            "mars_before:create_app()",
                            env,
                            args.workers,
                            workdir / "before.log",
                            pythonpath=HERE,
                        )
                    )
                servers.append(
                    start_gunicorn(
                        "raw",
                        "raw_app:create_app()",
                        {"RAW_DATABASE_URL": database.url, "RAW_SECRET_KEY": secret_key},
                        args.workers,
                        workdir / "raw.log",
                        pythonpath=HERE,
                    )
                )
                for server in servers:
                    wait_ready(server)
                check_same_answers(servers[:-1], servers[-1])
                say("  every app answers with the same items; running wrk")
                summary = bench_http(servers[:-1], servers[-1], args)
                for server in servers:
                    stop_server(server)
                report["http"] = asdict(summary)
                print_http(summary, args, database.kind)
            if not args.skip_deep:
                database = new_database(args, workdir, "deep")
                databases.append(database)
                say()
                say(f"Deep-page benchmark: building {database.kind} database")
                app = build_database(
                    database, args.deep_rows, secret_key, workdir / "instance-deep"
                )
                depth, rows = bench_deep(
                    app, database, args.deep_rows, secret_key, args.deep_repeats, warmup=20
                )
                with app.app_context():
                    from mars_server.db import db

                    db.engine.dispose()
                report["deep"] = {
                    "depth": depth,
                    "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
                }
                print_deep(depth, rows, args, database.kind)
    finally:
        for server in servers:
            stop_server(server)
        for database in databases:
            if database.postgres_name and not args.keep:
                drop_postgres_database(database)
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    say(f"\ndone in {report['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
