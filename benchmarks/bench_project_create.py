"""Benchmark ``POST /api/v1/projects``: MARS (project, membership, event, audit entry in one
transaction) against raw inserts with Flask + SQLAlchemy Core.

A fresh database is brought to head with MARS's own migrations, loaded with ``--rows``
projects, and given a user with a real personal access token (``projects:write``). Side by
side on loopback, each under ``gunicorn -w 2``:

- **MARS**: ``mars_server:create_app()``, ``ENV=production``; each request is authenticated
  with the token, validated, and writes the project, the owner's membership, the
  ``project.created`` outbox row and the audit entry in one transaction;
- **raw**: ``raw_create_app:create_app(mode="project")``: reads the JSON and inserts the
  project row, nothing else (the "raw insert" of the aim);
- **raw+outbox** (``mode="outbox"``): the project row and the outbox row, one transaction;
- **raw+all** (``mode="all"``): the same four rows MARS writes, one transaction, without
  any of MARS's checks or layers.

``wrk --latency`` with ``create_project.lua`` (a new slug on every request) drives each in
turn, the order rotating over ``--rounds`` rounds; the script prints req/s, p50, p99 and
server CPU per request (``/proc``; with PostgreSQL also the CPU of the database's own
backends), their medians, and the ratios of MARS to each raw variant from the same run.
At the end it checks that every response was a 2xx, that each app created at least as many
projects as wrk counted responses, and that every MARS project has its membership, its
outbox event and its audit entry.

Usage::

    .venv/bin/python benchmarks/bench_project_create.py [--duration 10] [--rounds 5]
        [--database-url postgresql://postgres@127.0.0.1:5432/bench_create]

With ``--database-url`` the named database (which must start with ``bench_``) is dropped,
created anew and dropped again at the end; without it a SQLite file (WAL) in a temporary
folder is used.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_projects_list import (  # the list benchmark's tools, shared
    Database,
    Server,
    cleanup_on_term,
    create_postgres_database,
    drop_postgres_database,
    load_projects,
    machine,
    mars_settings,
    missing_tools,
    parse_wrk,
    start_gunicorn,
    stop_server,
)

if TYPE_CHECKING:
    from flask import Flask

HERE = Path(__file__).resolve().parent
ENDPOINT = "/api/v1/projects"
LUA = HERE / "create_project.lua"
AIM_RATIO = 0.85
#: Slug prefix of each app's projects ("<prefix>-<run>-<thread>-<n>"): the final checks
#: count rows by it.
PREFIXES = {"MARS": "mars", "raw": "raw", "raw+outbox": "rawo", "raw+all": "rawa"}
MODES = {"raw": "project", "raw+outbox": "outbox", "raw+all": "all"}
#: Which rows each app writes per request, for the report.
ROWS_WRITTEN = {
    "MARS": "project, membership, outbox event, audit entry (+ token and member reads)",
    "raw": "project",
    "raw+outbox": "project, outbox event",
    "raw+all": "project, membership, outbox event, audit entry",
}


def say(message: str = "") -> None:
    print(message, flush=True)


# -- setup ---------------------------------------------------------------------------------


def bench_database(args: argparse.Namespace, workdir: Path) -> Database:
    if not args.database_url:
        return Database(f"sqlite:///{workdir / 'create.db'}")
    name = urlsplit(args.database_url).path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"the database name must start with 'bench_' (got {name!r})")
    return create_postgres_database(args.database_url, "")


def build(database: Database, rows: int, secret_key: str, instance: Path) -> tuple[str, str]:
    """Migrate, load ``rows`` projects, make a user and a token; return (user id, token)."""
    import mars_server
    from mars_server.db import db
    from mars_server.ops import migrations
    from mars_server.testing import make_token, make_user

    app: Flask = mars_server.create_app(mars_settings(database, secret_key, instance))
    with app.app_context():
        migrations.upgrade()
        if rows:
            load_projects(rows)
    user = make_user(app, email="bench-create@example.test")
    token = make_token(app, user, ["projects:write", "projects:read"], name="bench")
    with app.app_context():
        db.engine.dispose()
    return str(user.id), token


def post_json(url: str, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_ready(server: Server, token: str, timeout: float = 60) -> dict[str, Any]:
    """POST one project; return its body once the app answers 201."""
    deadline = time.monotonic() + timeout
    prefix = PREFIXES[server.name]
    attempt = 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.log.read_text()[-3000:]}")
        attempt += 1
        slug = f"{prefix}-ready-{attempt}"
        try:
            status, body = post_json(
                server.url + ENDPOINT,
                {"slug": slug, "name": slug, "description": "Created by the benchmark."},
                token,
            )
        except OSError:
            time.sleep(0.2)
            continue
        if status != 201:
            raise RuntimeError(f"{server.name}: POST answered {status}: {body}")
        return dict(body)
    raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s")


# -- CPU -----------------------------------------------------------------------------------


def _cpu_of(pids: set[int] | None, pgid: int | None) -> float:
    """User + system CPU seconds of ``pids``, or of every process in group ``pgid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (pids is not None and int(entry) not in pids):
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if pgid is None or int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class DatabaseCpu:
    """CPU of the PostgreSQL backends serving the benchmark's database (same machine)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def pids(self) -> set[int]:
        import psycopg

        parts = urlsplit(self.database.url.replace("postgresql+psycopg://", "postgresql://"))
        admin = parts._replace(path="/postgres").geturl()
        with psycopg.connect(admin, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                (self.database.postgres_name,),
            ).fetchall()
        return {int(row[0]) for row in rows}

    def sample(self) -> dict[int, float]:
        return {pid: _cpu_of({pid}, None) for pid in self.pids()}


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class Run:
    app: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    created: int
    cpu_ms_per_request: float
    db_cpu_ms_per_request: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


def count_projects(engine: Any, prefix: str) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(
            conn.scalar(
                sa.text("SELECT count(*) FROM projects WHERE slug LIKE :p"), {"p": prefix + "-%"}
            )
        )


def run_wrk(
    server: Server, prefix: str, token: str, duration: int, args: argparse.Namespace
) -> str:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA),
        server.url + ENDPOINT,
        "--",
        prefix,
    ]
    env = {**os.environ, "BENCH_TOKEN": token if server.name == "MARS" else ""}
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60, env=env
    )
    return done.stdout


def bench(
    servers: list[Server],
    token: str,
    engine: Any,
    db_cpu: DatabaseCpu | None,
    args: argparse.Namespace,
) -> list[Run]:
    say(f"  warm-up: {args.warmup} s each")
    for server in servers:
        run_wrk(server, f"{PREFIXES[server.name]}-w", token, args.warmup, args)
    runs: list[Run] = []
    for round_ in range(1, args.rounds + 1):
        shift = (round_ - 1) % len(servers)
        for server in servers[shift:] + servers[:shift]:
            prefix = f"{PREFIXES[server.name]}-r{round_}"
            db_before = db_cpu.sample() if db_cpu else None
            cpu_before = _cpu_of(None, server.process.pid)
            output = run_wrk(server, prefix, token, args.duration, args)
            cpu_after = _cpu_of(None, server.process.pid)
            db_after = db_cpu.sample() if db_cpu else None
            result = parse_wrk(output, server.name, round_)
            created = count_projects(engine, prefix)
            run = Run(
                server.name,
                round_,
                result.requests_per_second,
                result.p50_ms,
                result.p99_ms,
                result.requests,
                created,
                (cpu_after - cpu_before) * 1000 / max(result.requests, 1),
                errors=result.errors,
            )
            if db_before is not None and db_after is not None:
                used = sum(cpu - db_before.get(pid, 0.0) for pid, cpu in db_after.items())
                run.db_cpu_ms_per_request = used * 1000 / max(result.requests, 1)
            runs.append(run)
            db = (
                f"  db cpu {run.db_cpu_ms_per_request:5.2f}"
                if run.db_cpu_ms_per_request is not None
                else ""
            )
            say(
                f"  round {round_} {server.name:<11}{run.requests_per_second:8.1f} req/s  "
                f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  "
                f"cpu {run.cpu_ms_per_request:5.2f} ms/req{db}  created {created}"
                + (f"  errors {run.errors}" if run.errors else "")
            )
    return runs


# -- checks and report ---------------------------------------------------------------------


def check_rows(engine: Any, runs: list[Run], apps: list[str]) -> dict[str, dict[str, int]]:
    """Every response a 2xx and a row; every MARS project with its membership, event, audit."""
    import sqlalchemy as sa

    problems = [f"{r.app} round {r.round}: {r.errors}" for r in runs if r.errors]
    problems += [
        f"{r.app} round {r.round}: {r.created} projects for {r.requests} responses"
        for r in runs
        if r.created < r.requests
    ]
    counts: dict[str, dict[str, int]] = {}
    q = {
        "projects": "SELECT count(*) FROM projects WHERE slug LIKE :p",
        "memberships": "SELECT count(*) FROM project_members m JOIN projects p "
        "ON p.id = m.project_id WHERE p.slug LIKE :p AND m.role = 'owner'",
        "events": "SELECT count(*) FROM mars_events WHERE type = 'project.created' AND {r}",
        "audit entries": "SELECT count(*) FROM mars_audit_log "
        "WHERE action = 'project.created' AND {r}",
    }
    request_ids = {
        "MARS": "",
        "raw": "raw-project",
        "raw+outbox": "raw-outbox",
        "raw+all": "raw-all",
    }
    with engine.connect() as conn:
        for app in apps:
            counts[app] = {
                what: int(
                    conn.scalar(
                        sa.text(
                            sql.format(
                                r="request_id = :r"
                                if request_ids[app]
                                else "request_id NOT LIKE 'raw-%'"
                            )
                        ),
                        {"p": PREFIXES[app] + "-%", "r": request_ids[app]},
                    )
                )
                for what, sql in q.items()
            }
    expected = {
        "MARS": ("memberships", "events", "audit entries"),
        "raw": (),
        "raw+outbox": ("events",),
        "raw+all": ("memberships", "events", "audit entries"),
    }
    for app, figures in counts.items():
        for what in expected[app]:
            if figures[what] != figures["projects"]:
                problems.append(f"{app}: {figures[what]} {what} for {figures['projects']} projects")
        for what in {"memberships", "events", "audit entries"} - set(expected[app]):
            if figures[what]:
                problems.append(f"{app}: wrote {figures[what]} {what}, expected none")
    if problems:
        raise RuntimeError("checks failed:\n  " + "\n  ".join(problems))
    return counts


def medians(runs: list[Run], app: str) -> dict[str, float]:
    mine = [r for r in runs if r.app == app]
    keys = ["requests_per_second", "p50_ms", "p99_ms", "cpu_ms_per_request"]
    if all(r.db_cpu_ms_per_request is not None for r in mine):
        keys.append("db_cpu_ms_per_request")
    return {key: statistics.median(getattr(r, key) for r in mine) for key in keys}


def report(runs: list[Run], apps: list[str], args: argparse.Namespace, kind: str) -> dict[str, Any]:
    say()
    say(
        f"POST {ENDPOINT} ({kind}), gunicorn -w {args.workers}, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, {args.rounds} rotated rounds; medians"
    )
    med = {app: medians(runs, app) for app in apps}
    db = "db_cpu_ms_per_request" in med["MARS"]
    say(
        f"{'app':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/req':>12}"
        + (f"{'db cpu ms/req':>15}" if db else "")
        + "   rows written per request"
    )
    for app in apps:
        m = med[app]
        say(
            f"{app:<12}{m['requests_per_second']:>9.1f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
            f"{m['cpu_ms_per_request']:>12.2f}"
            + (f"{m['db_cpu_ms_per_request']:>15.2f}" if db else "")
            + f"   {ROWS_WRITTEN[app]}"
        )

    def per_round(a: str, b: str) -> list[float]:
        by = {(r.app, r.round): r.requests_per_second for r in runs}
        return [by[(a, n)] / by[(b, n)] for n in range(1, args.rounds + 1)]

    ratios: dict[str, Any] = {}
    for base in apps[1:]:
        b, m = med[base], med["MARS"]
        rounds = per_round("MARS", base)
        ratio: dict[str, Any] = {
            "rps": m["requests_per_second"] / b["requests_per_second"],
            "per_round": rounds,
            "per_round_median": statistics.median(rounds),
            "cpu": b["cpu_ms_per_request"] / m["cpu_ms_per_request"],
            "p50": m["p50_ms"] / b["p50_ms"],
            "p99": m["p99_ms"] / b["p99_ms"],
        }
        if db:
            ratio["cpu_with_db"] = (b["cpu_ms_per_request"] + b["db_cpu_ms_per_request"]) / (
                m["cpu_ms_per_request"] + m["db_cpu_ms_per_request"]
            )
        ratios[base] = ratio
        aim = f" ({'meets' if ratio['rps'] >= AIM_RATIO else 'BELOW'} the {AIM_RATIO} aim)"
        say(
            f"MARS/{base} req/s: {ratio['rps']:.3f}{aim if base == 'raw' else ''}; per round "
            f"{', '.join(f'{r:.3f}' for r in rounds)} (median {ratio['per_round_median']:.3f})"
        )
        say(
            f"  {base}/MARS server CPU per request: {ratio['cpu']:.3f}"
            + (f"; with the database's CPU: {ratio['cpu_with_db']:.3f}" if db else "")
            + f"; latency MARS/{base}: p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x"
        )
    return {"medians": med, "ratios": ratios}


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="projects loaded beforehand")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per app")
    parser.add_argument("--rounds", type=int, default=5, help="rotated rounds per app")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument(
        "--variants",
        default="raw,raw+outbox,raw+all",
        help="raw variants to serve beside MARS (default: raw,raw+outbox,raw+all)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="use PostgreSQL: postgresql://user@127.0.0.1:5432/bench_NAME (dropped, "
        "recreated, dropped at the end)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or variants[0] != "raw" or set(variants) - set(MODES):
        parser.error(f"--variants: 'raw' first, then any of {sorted(MODES)}")
    args.variants = variants
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if problems := missing_tools():
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mars-bench-create-"))
    secret_key = secrets.token_urlsafe(36)
    out: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    say(f"machine: {out['machine']}")
    database: Database | None = None
    servers: list[Server] = []
    engine = None
    started = time.monotonic()
    try:
        with cleanup_on_term():
            database = bench_database(args, workdir)
            say(f"building the {database.kind} database ({args.rows:,} projects)")
            owner_id, token = build(database, args.rows, secret_key, workdir / "instance")
            env = {
                "MARS_" + k: v
                for k, v in mars_settings(database, secret_key, workdir / "instance").items()
            }
            servers.append(
                start_gunicorn(
                    "MARS", "mars_server:create_app()", env, args.workers, workdir / "mars.log"
                )
            )
            for name in args.variants:
                servers.append(
                    start_gunicorn(
                        name,
                        f'raw_create_app:create_app(mode="{MODES[name]}")',
                        {"RAW_DATABASE_URL": database.url, "RAW_OWNER_ID": owner_id},
                        args.workers,
                        workdir / f"{PREFIXES[name]}.log",
                        pythonpath=HERE,
                    )
                )
            bodies = {server.name: wait_ready(server, token) for server in servers}
            keys = {name: list(body) for name, body in bodies.items()}
            if any(k != keys["MARS"] for k in keys.values()):
                raise RuntimeError(f"the apps answer with different fields: {keys}")
            say(f"  every app answers 201 with the fields {keys['MARS']}; running wrk")

            import sqlalchemy as sa

            from mars_server.config import normalise_database_url

            engine = sa.create_engine(normalise_database_url(database.url))
            db_cpu = DatabaseCpu(database) if database.postgres_name else None
            runs = bench(servers, token, engine, db_cpu, args)
            for server in servers:
                stop_server(server)
            apps = [server.name for server in servers]
            counts = check_rows(engine, runs, apps)
            say("\nrows written in all (warm-up, readiness and timed runs):")
            for app, figures in counts.items():
                say(f"  {app:<11} " + ", ".join(f"{n} {what}" for what, n in figures.items()))
            say("  checks passed: no errors, every response a row, every MARS project whole")
            out["runs"] = [asdict(r) for r in runs]
            out["rows"] = counts
            out["summary"] = report(runs, apps, args, database.kind)
    finally:
        for server in servers:
            stop_server(server)
        if engine is not None:
            engine.dispose()
        if database is not None and database.postgres_name:
            drop_postgres_database(database)
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out["seconds"] = round(time.monotonic() - started, 1)
    say(f"\ndone in {out['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
