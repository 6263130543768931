"""Benchmark webhook deliveries per second: MARS's embedded worker and Celery, against a
plain Python loop and the receiver's own ceiling, to a loopback receiver.

Once, a template database is brought to head with MARS's migrations; a user with a real
token creates ``--endpoints`` webhook endpoints through ``POST /api/v1/webhooks`` (their
URLs on a loopback port, subscribed to ``project.created``), then ``--events`` projects
are created through the projects plugin's service (``create_project``: each commits the
project, its membership, the ``project.created`` outbox event and its audit entry), and
the audit log is sealed. The events are committed and not dispatched yet.

Then each trial gets a fresh copy of that database and a fresh receiver
(``webhook_receiver.py``: asyncio, ``--receiver-procs`` processes, keep-alive, checks each
signature, answers 204, logs each ``webhook-id`` with its arrival time), and runs:

- ``embedded c=N``: ``mars worker`` (one process; ``MARS_WORKER_CONCURRENCY=N`` threads),
  which relays the events, runs the ``webhooks.fan_out`` and ``notifications.from_event``
  jobs of each event, then the ``webhooks.deliver`` job of each delivery;
- ``celery <broker>``: ``mars relay`` and ``mars worker -c P`` (one Celery worker with P
  prefork processes, ``--celery-procs``, 2 by default), ``MARS_JOBS_BACKEND=celery``;
- ``loop t=N`` (baseline): ``webhook_loop.py``, N threads POSTing the very bodies MARS
  sends, signed by MARS's code, with ``requests.Session``: no database, no jobs;
- ``receiver`` (ceiling): ``wrk`` POSTing one signed body to the receiver.

Deliveries per second are counted at the receiver, from the first delivery to the last.
Trials rotate over ``--rounds`` rounds; the script prints each, their medians, and ratios
from the same run. It checks that nothing was lost: every delivery row succeeded, in one
attempt, and the receiver saw every ``webhook-id`` with a good signature; it counts
duplicates. Server CPU per delivery comes from ``/proc`` (the worker processes' groups;
with PostgreSQL also the database's backends), sampled every 0.2 s.

Usage::

    .venv/bin/python benchmarks/bench_webhook_deliveries.py [--events 5000]
        [--concurrency 8,16,32] [--celery redis,rabbitmq] [--rounds 2]
        [--database-url postgresql://postgres@127.0.0.1:5432/bench_hooks]

With ``--database-url`` (a name starting with ``bench_``) the template is that database
and each trial's copy is ``<name>_trial``; all are dropped at the end. Celery uses
``--redis-url`` (a Redis database that must be empty; emptied again at the end) and, for
RabbitMQ, a vhost of its own (``--rabbitmq-vhost``, made and deleted with ``rabbitmqctl``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_project_create import _cpu_of  # the /proc reader, shared
from bench_projects_list import (  # the list benchmark's tools, shared
    Database,
    cleanup_on_term,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    machine,
    mars_settings,
    parse_wrk,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
MARS = str(Path(sys.executable).with_name("mars"))
AIM = 500.0
EVENT_TYPE = "project.created"


def say(message: str = "") -> None:
    print(message, flush=True)


# -- processes -----------------------------------------------------------------------------


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` alone in a new process group (its children stay in it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARS_", "BENCH_"))}
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM the process group, wait; SIGKILL it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Celery's pool processes may outlive their parent for a moment: the group must be empty.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the template database ------------------------------------------------------------------


@dataclass
class Template:
    database: Database
    settings: dict[str, str]
    port: int
    secrets: list[str]
    expected: int
    bodies: Path
    seconds: float


def build_template(args: argparse.Namespace, workdir: Path) -> Template:
    import sqlalchemy as sa

    import mars_server
    from mars_server.audit.chain import seal
    from mars_server.db import db
    from mars_server.events import Event
    from mars_server.events.models import OutboxEvent
    from mars_server.ops import migrations
    from mars_server.testing import make_token, make_user
    from mars_server.webhooks.signing import body_of

    if args.database_url:
        name = urlsplit(args.database_url).path.lstrip("/")
        if not name.startswith("bench_"):
            raise SystemExit(f"the database name must start with 'bench_' (got {name!r})")
        database = create_postgres_database(args.database_url, "")
    else:
        database = Database(f"sqlite:///{workdir / 'template.db'}")
    settings = mars_settings(database, args.secret_key, workdir / "instance")
    settings["WEBHOOKS_ALLOW_PRIVATE"] = "true"
    port = free_port()
    app = mars_server.create_app(dict(settings))
    with app.app_context():
        migrations.upgrade()
    user = make_user(app, email="bench-hooks@example.test")
    token = make_token(app, user, ["webhooks:write", "webhooks:read", "projects:write"])
    client = app.test_client()
    hook_secrets = []
    for number in range(args.endpoints):
        response = client.post(
            "/api/v1/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook/{number}", "events": [EVENT_TYPE]},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/webhooks: {response.status_code} {response.text}")
        hook_secrets.append(response.get_json()["secret"])
    started = time.perf_counter()
    with app.app_context():
        from mars_projects import services

        for number in range(args.events):
            services.create_project(
                user.id,
                {
                    "slug": f"hooked-{number}",
                    "name": f"Hooked {number}",
                    "description": "Created by the webhook benchmark.",
                    "visibility": "private",
                },
            )
        seconds = time.perf_counter() - started
        while seal():  # a sealed audit log: the trials' seal job finds nothing to do
            db.session.commit()
        db.session.commit()
        rows = db.session.scalars(
            sa.select(OutboxEvent)
            .where(OutboxEvent.type == EVENT_TYPE)
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        ).all()
        if len(rows) != args.events:
            raise RuntimeError(f"{len(rows)} {EVENT_TYPE} events for {args.events} projects")
        bodies = workdir / "bodies.jsonl"
        bodies.write_text(
            "".join(json.dumps([row.id, body_of(Event.from_row(row))]) + "\n" for row in rows)
        )
        db.session.remove()
        db.engine.dispose()
    if not database.postgres_name:
        with contextlib.closing(sqlite3.connect(workdir / "template.db")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Template(
        database,
        settings,
        port,
        hook_secrets,
        args.events * args.endpoints,
        bodies,
        seconds,
    )


def trial_database(template: Template, workdir: Path, name: str) -> Database:
    if not template.database.postgres_name:
        path = workdir / f"{name}.db"
        shutil.copyfile(workdir / "template.db", path)
        return Database(f"sqlite:///{path}")
    import psycopg
    from psycopg import sql

    parts = urlsplit(template.database.url)
    trial = template.database.postgres_name + "_trial"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(trial))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(trial), sql.Identifier(template.database.postgres_name)
            )
        )
    return Database(urlunsplit(parts._replace(path="/" + trial)), postgres_name=trial)


def drop_trial_database(database: Database) -> None:
    if database.postgres_name:
        drop_postgres_database(database)
    else:
        path = Path(urlsplit(database.url).path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- brokers --------------------------------------------------------------------------------


class Brokers:
    """The Celery brokers the benchmark owns: an empty Redis database, a RabbitMQ vhost."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.urls: dict[str, str] = {}
        self.vhost_made = False

    def prepare(self) -> None:
        if "redis" in self.args.celery:
            import redis

            client = redis.Redis.from_url(self.args.redis_url)
            if client.dbsize():
                raise SystemExit(
                    f"{self.args.redis_url} is not empty: give --redis-url a database "
                    "nobody else uses"
                )
            self.urls["redis"] = self.args.redis_url
        if "rabbitmq" in self.args.celery:
            vhost = self.args.rabbitmq_vhost
            subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
            self.vhost_made = True
            subprocess.run(
                ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                check=True,
            )
            self.urls["rabbitmq"] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"

    def purge(self, broker: str) -> None:
        from kombu import Connection

        with (
            Connection(self.urls[broker], connect_timeout=5) as connection,
            contextlib.suppress(Exception),
        ):
            connection.channel().queue_purge("mars")

    def close(self) -> None:
        if "redis" in self.urls:
            import redis

            redis.Redis.from_url(self.urls["redis"]).flushdb()
        if self.vhost_made:
            subprocess.run(
                ["rabbitmqctl", "-q", "delete_vhost", self.args.rabbitmq_vhost], check=False
            )


# -- measuring ------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """CPU seconds used by process groups (and a PostgreSQL database's backends) over time."""

    def __init__(self, groups: list[int], database: Database, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.groups = groups
        self.database = database
        self.interval = interval
        self.samples: list[tuple[int, float, float]] = []
        self.halt = threading.Event()
        self._backends: dict[int, float] = {}

    def _db_cpu(self, conn: Any) -> float:
        if conn is None:
            return 0.0
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database.postgres_name,)
        ).fetchall()
        for (pid,) in rows:
            self._backends[int(pid)] = _cpu_of({int(pid)}, None) or self._backends.get(pid, 0)
        return sum(self._backends.values())

    def run(self) -> None:
        conn = None
        if self.database.postgres_name:
            import psycopg

            parts = urlsplit(self.database.url)
            conn = psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)
        try:
            while not self.halt.is_set():
                cpu = sum(_cpu_of(None, group) for group in self.groups)
                self.samples.append((time.time_ns(), cpu, self._db_cpu(conn)))
                self.halt.wait(self.interval)
        finally:
            if conn is not None:
                conn.close()

    def at(self, ns: int) -> tuple[float, float]:
        """CPU (processes, database) at time ``ns``, interpolated between samples."""
        samples = self.samples
        if not samples:
            return 0.0, 0.0
        if ns <= samples[0][0]:
            return samples[0][1], samples[0][2]
        for (t0, a0, b0), (t1, a1, b1) in itertools.pairwise(samples):
            if t0 <= ns <= t1:
                share = (ns - t0) / max(t1 - t0, 1)
                return a0 + (a1 - a0) * share, b0 + (b1 - b0) * share
        return samples[-1][1], samples[-1][2]


@dataclass
class Received:
    ids: dict[str, int]
    first_ns: int
    last_ns: int
    total: int
    bad_signatures: int


def read_received(folder: Path, expected_ids: set[str] | None) -> Received:
    ids: dict[str, int] = {}
    first = last = 0
    total = bad = 0
    for path in sorted(folder.glob("ids-*.txt")):
        for line in path.read_text().splitlines():
            webhook_id, ns_text, ok = line.split()
            ns = int(ns_text)
            total += 1
            bad += ok != "1"
            ids[webhook_id] = ids.get(webhook_id, 0) + 1
            if expected_ids is None or webhook_id in expected_ids:
                first = ns if not first else min(first, ns)
                last = max(last, ns)
    return Received(ids, first, last, total, bad)


@dataclass
class Trial:
    name: str
    round: int
    deliveries: int
    per_second: float
    #: from starting the worker processes to the last delivery
    end_to_end_seconds: float | None = None
    #: from starting the worker processes to the first delivery
    first_seconds: float | None = None
    cpu_ms_per_delivery: float | None = None
    db_cpu_ms_per_delivery: float | None = None
    lost: int = 0
    duplicates: int = 0
    bad_signatures: int = 0
    failed: int = 0
    extra_attempts: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    note: str = ""


class Receiver:
    def __init__(self, template: Template, folder: Path, procs: int, log: Path) -> None:
        if listening(template.port):
            raise RuntimeError(f"port {template.port} is taken: a receiver left behind?")
        self.folder = folder
        self.process = start(
            [
                sys.executable,
                str(HERE / "webhook_receiver.py"),
                "--port",
                str(template.port),
                "--procs",
                str(procs),
                "--out",
                str(folder),
            ],
            {"BENCH_WEBHOOK_SECRETS": " ".join(template.secrets)},
            log,
        )
        deadline = time.monotonic() + 10
        while not listening(template.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the receiver did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # every process listening

    def stop(self, expected_ids: set[str] | None) -> Received:
        stop(self.process)
        return read_received(self.folder, expected_ids)


def delivery_status(database: Database) -> dict[str, int]:
    """Deliveries by status, and (``jobs done``) every job that has finished."""
    import sqlalchemy as sa

    from mars_server.config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(database.url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
            ).all()
            jobs_done = conn.scalar(
                sa.text("SELECT count(*) FROM mars_jobs WHERE status IN ('succeeded', 'dead')")
            )
    finally:
        engine.dispose()
    return {str(status): int(n) for status, n in rows} | {"jobs done": int(jobs_done or 0)}


def verify(database: Database) -> tuple[set[str], dict[str, Any]]:
    """The delivery ids, and what the database says of them and of the jobs."""
    import sqlalchemy as sa

    from mars_server.config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(database.url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            deliveries = conn.execute(
                sa.text("SELECT id, status, attempt_count FROM webhook_deliveries")
            ).all()
            attempts = conn.scalar(sa.text("SELECT count(*) FROM webhook_attempts"))
            jobs = conn.execute(
                sa.text("SELECT task, status, count(*) FROM mars_jobs GROUP BY task, status")
            ).all()
            errors = conn.scalars(
                sa.text(
                    "SELECT DISTINCT last_error FROM mars_jobs WHERE last_error IS NOT NULL LIMIT 3"
                )
            ).all()
    finally:
        engine.dispose()
    return {str(row.id) for row in deliveries}, {
        "deliveries": len(deliveries),
        "failed": sum(row.status != "succeeded" for row in deliveries),
        "extra_attempts": int(attempts or 0) - len(deliveries),
        "retried": sum(row.attempt_count != 1 for row in deliveries),
        "jobs": {f"{task} {status}": int(n) for task, status, n in jobs},
        "errors": [str(e).splitlines()[-1][:200] for e in errors],
    }


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path("/proc", entry, "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry))
    return sorted(pids)


def dump_stacks(processes: list[subprocess.Popen[bytes]], log: Path) -> None:
    """``py-spy dump`` of every worker process (when installed), for a trial that stalls."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return
    with log.open("a") as out:
        for process in processes:
            for pid in group_pids(process.pid):
                out.write(f"=== py-spy dump {pid} at {time.strftime('%H:%M:%S')}\n")
                out.flush()
                subprocess.run(
                    [spy, "dump", "--pid", str(pid)], stdout=out, stderr=out, check=False
                )


def wait_delivered(
    database: Database,
    expected: int,
    processes: list[subprocess.Popen[bytes]],
    args: Any,
    stall_log: Path | None = None,
) -> None:
    started = last_change = time.monotonic()
    done = -1
    dumped = False
    while True:
        status = delivery_status(database)
        succeeded = status.get("succeeded", 0)
        if status.get("failed"):
            raise RuntimeError(f"deliveries failed: {status}")
        if succeeded >= expected:
            return
        # Progress is any finished job: deliveries wait behind the backlog of the events'
        # handler jobs (jobs run in run_at order), which can take a minute to clear.
        progress = succeeded + status["jobs done"]
        if progress != done:
            done, last_change = progress, time.monotonic()
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker process exited ({process.args!r}): {status}")
        now = time.monotonic()
        if stall_log is not None and not dumped and now - last_change > min(20, args.stall / 2):
            dumped = True
            say(f"    no progress for {now - last_change:.0f} s ({status}): stacks in {stall_log}")
            dump_stacks(processes, stall_log)
        if now - last_change > args.stall or now - started > args.timeout:
            raise RuntimeError(f"no progress: {status} of {expected} after {now - started:.0f} s")
        time.sleep(0.25)


def trial_name(kind: str, value: Any) -> str:
    return {
        "ceiling": "receiver (wrk)",
        "loop": f"loop t={value}",
        "embedded": f"embedded c={value}",
        "celery": f"celery {value}",
        "embedded+fix": f"embedded+fix c={value}",
        "celery+fix": f"celery+fix {value}",
    }[kind]


def run_mars(
    kind: str,
    value: Any,
    template: Template,
    brokers: Brokers,
    workdir: Path,
    round_: int,
    args: argparse.Namespace,
) -> Trial:
    name = trial_name(kind, value)
    tag = f"r{round_}-{name.replace(' ', '-').replace('=', '').replace('+', '')}"
    mars = [sys.executable, str(HERE / "mars_fixed_claim.py")] if kind.endswith("+fix") else [MARS]
    database = trial_database(template, workdir, tag)
    env = {"MARS_" + k: v for k, v in (template.settings | {"DATABASE_URL": database.url}).items()}
    processes: list[subprocess.Popen[bytes]] = []
    receiver = Receiver(
        template, workdir / tag, args.receiver_procs, workdir / f"{tag}.receiver.log"
    )
    sampler: Sampler | None = None
    try:
        if kind.startswith("embedded"):
            env["MARS_WORKER_CONCURRENCY"] = str(value)
            env["MARS_DATABASE_POOL_SIZE"] = str(max(10, value + 2))
            commands = [[*mars, "worker"]]
        else:
            brokers.purge(value)
            env["MARS_JOBS_BACKEND"] = "celery"
            env["MARS_CELERY_BROKER_URL"] = brokers.urls[value]
            commands = [[*mars, "relay"], [*mars, "worker", "-c", str(args.celery_procs)]]
        started_ns = time.time_ns()
        for number, command in enumerate(commands):
            processes.append(start(command, env, workdir / f"{tag}.{number}.log"))
        sampler = Sampler([p.pid for p in processes], database)
        sampler.start()
        try:
            wait_delivered(
                database, template.expected, processes, args, workdir / f"{tag}.stall.txt"
            )
        except RuntimeError as error:
            facts = verify(database)[1]
            raise RuntimeError(f"{error}; jobs {facts['jobs']}; errors {facts['errors']}") from None
        time.sleep(0.3)  # let the last answers be logged and the sampler see the end
    finally:
        if sampler is not None:
            sampler.halt.set()
            sampler.join()
        for process in processes:
            stop(process)
        ids, facts = verify(database) if processes else (set(), {})
        received = receiver.stop(ids)
        drop_trial_database(database)
    return summarise(name, round_, ids, received, sampler, facts, started_ns)


def summarise(
    name: str,
    round_: int,
    ids: set[str],
    received: Received,
    sampler: Sampler | None,
    facts: dict[str, Any],
    started_ns: int | None,
) -> Trial:
    seen = set(received.ids)
    span = (received.last_ns - received.first_ns) / 1e9
    count = len(ids & seen)
    trial = Trial(
        name,
        round_,
        count,
        (count - 1) / span if span > 0 else 0.0,
        lost=len(ids - seen),
        duplicates=sum(n - 1 for webhook_id, n in received.ids.items() if webhook_id in ids),
        bad_signatures=received.bad_signatures,
        failed=facts.get("failed", 0),
        extra_attempts=facts.get("extra_attempts", 0),
        jobs=facts.get("jobs", {}),
    )
    if started_ns is not None:
        trial.end_to_end_seconds = (received.last_ns - started_ns) / 1e9
        trial.first_seconds = (received.first_ns - started_ns) / 1e9
    if sampler is not None and count > 1:
        cpu0, db0 = sampler.at(received.first_ns)
        cpu1, db1 = sampler.at(received.last_ns)
        trial.cpu_ms_per_delivery = (cpu1 - cpu0) * 1000 / (count - 1)
        if sampler.database.postgres_name:
            trial.db_cpu_ms_per_delivery = (db1 - db0) * 1000 / (count - 1)
    unexpected = len(seen - ids)
    if unexpected:
        trial.note = f"{unexpected} unexpected ids"
    return trial


def run_loop(
    threads: int, template: Template, workdir: Path, round_: int, args: argparse.Namespace
) -> Trial:
    name = trial_name("loop", threads)
    tag = f"r{round_}-loop{threads}"
    ids = {json.loads(line)[0] for line in template.bodies.read_text().splitlines() if line}
    receiver = Receiver(
        template, workdir / tag, args.receiver_procs, workdir / f"{tag}.receiver.log"
    )
    sampler = None
    process = None
    try:
        process = start(
            [
                sys.executable,
                str(HERE / "webhook_loop.py"),
                "--url",
                f"http://127.0.0.1:{template.port}/hook/0",
                "--bodies",
                str(template.bodies),
                "--threads",
                str(threads),
            ],
            {"BENCH_WEBHOOK_SECRETS": template.secrets[0]},
            workdir / f"{tag}.log",
        )
        sampler = Sampler([process.pid], Database("sqlite://"))
        sampler.start()
        if process.wait(timeout=args.timeout) != 0:
            raise RuntimeError(f"{name} failed:\n{(workdir / f'{tag}.log').read_text()[-2000:]}")
    finally:
        if sampler is not None:
            sampler.halt.set()
            sampler.join()
        if process is not None:
            stop(process)
        received = receiver.stop(ids)
    return summarise(name, round_, ids, received, sampler, {}, None)


def run_ceiling(template: Template, workdir: Path, round_: int, args: argparse.Namespace) -> Trial:
    """wrk against the receiver: one signed body, ``--connections`` connections."""
    from mars_server.webhooks.signing import headers

    webhook_id, body = json.loads(template.bodies.read_text().splitlines()[0])
    sent = headers(webhook_id, int(time.time()), body, template.secrets[:1])
    script = workdir / "ceiling.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in sent.items())
    )
    tag = f"r{round_}-ceiling"
    receiver = Receiver(
        template, workdir / tag, args.receiver_procs, workdir / f"{tag}.receiver.log"
    )
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.ceiling_seconds}s",
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{template.port}/hook/0",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=args.ceiling_seconds + 60,
        )
    finally:
        received = receiver.stop(None)
    result = parse_wrk(done.stdout, "receiver", round_)
    trial = Trial(
        trial_name("ceiling", None),
        round_,
        received.total,
        result.requests_per_second,
        bad_signatures=received.bad_signatures,
    )
    if result.errors:
        trial.note = f"wrk errors {result.errors}"
    return trial


# -- report ---------------------------------------------------------------------------------


def show(trial: Trial) -> None:
    parts = [f"  round {trial.round} {trial.name:<17}{trial.per_second:9.1f}/s"]
    if trial.end_to_end_seconds is not None:
        parts.append(
            f"first after {trial.first_seconds or 0:4.1f} s, all {trial.deliveries} in "
            f"{trial.end_to_end_seconds:5.1f} s from start"
        )
    if trial.cpu_ms_per_delivery is not None:
        parts.append(f"cpu {trial.cpu_ms_per_delivery:5.2f} ms/delivery")
    if trial.db_cpu_ms_per_delivery is not None:
        parts.append(f"db cpu {trial.db_cpu_ms_per_delivery:5.2f}")
    if trial.name != "receiver (wrk)":
        parts.append(
            f"lost {trial.lost} dup {trial.duplicates} bad sig {trial.bad_signatures}"
            + (f" failed {trial.failed} retried {trial.extra_attempts}" if trial.jobs else "")
        )
    if trial.note:
        parts.append(trial.note)
    say("  ".join(parts))


def report(trials: list[Trial], args: argparse.Namespace, kind: str) -> dict[str, Any]:
    names = list(dict.fromkeys(t.name for t in trials))
    say()
    say(
        f"Webhook deliveries ({kind}): {args.events:,} events x {args.endpoints} endpoint(s), "
        f"receiver {args.receiver_procs} processes; {args.rounds} rotated rounds; medians"
    )
    say(
        f"{'trial':<18}{'per s':>9}{'cpu ms/dlv':>12}{'db cpu':>8}{'first after s':>15}"
        f"{'all after s':>13}"
    )
    med: dict[str, dict[str, float]] = {}
    for name in names:
        mine = [t for t in trials if t.name == name]
        figures = {"per_second": statistics.median(t.per_second for t in mine)}
        for key in (
            "cpu_ms_per_delivery",
            "db_cpu_ms_per_delivery",
            "first_seconds",
            "end_to_end_seconds",
        ):
            values = [getattr(t, key) for t in mine if getattr(t, key) is not None]
            if values:
                figures[key] = statistics.median(values)
        med[name] = figures

        def cell(key: str, width: int, figures: dict[str, float] = figures) -> str:
            return f"{figures[key]:>{width}.2f}" if key in figures else " " * width

        say(
            f"{name:<18}{figures['per_second']:>9.1f}{cell('cpu_ms_per_delivery', 12)}"
            f"{cell('db_cpu_ms_per_delivery', 8)}{cell('first_seconds', 15)}"
            f"{cell('end_to_end_seconds', 13)}"
        )
    by = {(t.name, t.round): t for t in trials}
    ratios: dict[str, Any] = {}
    for name in [n for n in names if n.startswith(("embedded", "celery"))]:
        entry: dict[str, Any] = {}
        for base in [n for n in names if n.startswith("loop")] + ["receiver (wrk)"]:
            if base not in med or not med[base]["per_second"]:
                continue
            rounds = [
                by[(name, r)].per_second / by[(base, r)].per_second
                for r in range(1, args.rounds + 1)
                if (name, r) in by and (base, r) in by and by[(base, r)].per_second
            ]
            entry[base] = {
                "ratio": med[name]["per_second"] / med[base]["per_second"],
                "per_round": rounds,
            }
            if "cpu_ms_per_delivery" in med[name] and "cpu_ms_per_delivery" in med[base]:
                entry[base]["cpu"] = (
                    med[base]["cpu_ms_per_delivery"] / med[name]["cpu_ms_per_delivery"]
                )
        ratios[name] = entry
        verdict = "meets" if med[name]["per_second"] >= AIM else "BELOW"
        loops = ", ".join(
            f"/{b}: {v['ratio']:.3f} (rounds {', '.join(f'{r:.3f}' for r in v['per_round'])})"
            + (f", CPU {v['cpu']:.3f}" if "cpu" in v else "")
            for b, v in entry.items()
        )
        say(f"{name}: {med[name]['per_second']:.0f}/s ({verdict} {AIM:.0f}/s); {loops}")
    bad = [
        t
        for t in trials
        if t.lost or t.bad_signatures or t.failed or (t.note and "unexpected" in t.note)
    ]
    say(
        "none lost: every delivery succeeded and reached the receiver with a good signature"
        if not bad
        else "PROBLEMS: " + "; ".join(f"{t.name} round {t.round}" for t in bad)
    )
    dup = sum(t.duplicates for t in trials)
    retried = sum(t.extra_attempts for t in trials)
    say(f"duplicates seen by the receiver: {dup}; attempts beyond the first: {retried}")
    return {"medians": med, "ratios": ratios, "problems": len(bad)}


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--concurrency", default="8,16,32", help="embedded worker threads to try (8,16,32)"
    )
    parser.add_argument(
        "--loop-threads",
        default=None,
        help="threads of the Python loop baseline (default: the --concurrency values)",
    )
    parser.add_argument(
        "--celery", default="redis", help="brokers to try: redis, rabbitmq, or none"
    )
    parser.add_argument("--celery-procs", type=int, default=2, help="Celery prefork processes")
    parser.add_argument("--receiver-procs", type=int, default=2)
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections for the receiver ceiling"
    )
    parser.add_argument("--ceiling-seconds", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="PostgreSQL .../bench_NAME")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--rabbitmq-vhost", default="bench_mars")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per trial at most")
    parser.add_argument("--stall", type=float, default=60, help="seconds without progress")
    parser.add_argument(
        "--only", default=None, help="comma-separated trial kinds: ceiling,loop,embedded,celery"
    )
    parser.add_argument(
        "--what-if",
        default="",
        help="also run MARS with the claim fix of mars_fixed_claim.py, e.g. "
        "'embedded:16,celery:redis'",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.loop_threads = (
        [int(c) for c in args.loop_threads.split(",") if c]
        if args.loop_threads
        else args.concurrency
    )
    args.celery = [b for b in args.celery.split(",") if b and b != "none"]
    if set(args.celery) - {"redis", "rabbitmq"}:
        parser.error("--celery: redis, rabbitmq or none")
    args.only = (
        set(args.only.split(",")) if args.only else {"ceiling", "loop", "embedded", "celery"}
    )
    args.what_if = [w for w in args.what_if.split(",") if w]
    for what_if in args.what_if:
        kind, _, value = what_if.partition(":")
        if kind not in ("embedded", "celery") or not value:
            parser.error("--what-if: embedded:<threads> or celery:<broker>, comma-separated")
        if kind == "celery" and value not in args.celery:
            parser.error(f"--what-if celery:{value} needs --celery {value}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, Any]]:
    trials: list[tuple[str, Any]] = []
    if "ceiling" in args.only:
        trials.append(("ceiling", None))
    if "loop" in args.only:
        trials += [("loop", t) for t in args.loop_threads]
    if "embedded" in args.only:
        trials += [("embedded", c) for c in args.concurrency]
    if "celery" in args.only:
        trials += [("celery", b) for b in args.celery]
    for what_if in args.what_if:  # "embedded:16", "celery:redis"
        kind, _, value = what_if.partition(":")
        trials.append((f"{kind}+fix", int(value) if kind == "embedded" else value))
    return trials


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="mars-bench-hooks-"))
    try:
        yield workdir
    finally:
        if keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and "ceiling" in args.only:
        print("error: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    args.secret_key = secrets.token_urlsafe(36)
    out: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items() if k != "secret_key"},
    }
    say(f"machine: {out['machine']}")
    started = time.monotonic()
    brokers = Brokers(args)
    template: Template | None = None
    trials: list[Trial] = []
    with workspace(args.keep) as workdir, cleanup_on_term():
        try:
            if args.celery and ("celery" in args.only or any("celery" in w for w in args.what_if)):
                brokers.prepare()
            say(f"building the template: {args.events:,} events, {args.endpoints} endpoint(s)")
            template = build_template(args, workdir)
            say(
                f"  {template.database.kind}; {args.events:,} projects created (each with its "
                f"event) in {template.seconds:.1f} s; receiver port {template.port}"
            )
            kinds = plan(args)
            for round_ in range(1, args.rounds + 1):
                shift = (round_ - 1) % len(kinds)
                for kind, value in kinds[shift:] + kinds[:shift]:
                    try:
                        if kind == "ceiling":
                            trial = run_ceiling(template, workdir, round_, args)
                        elif kind == "loop":
                            trial = run_loop(value, template, workdir, round_, args)
                        else:
                            trial = run_mars(kind, value, template, brokers, workdir, round_, args)
                    except (RuntimeError, subprocess.SubprocessError) as error:
                        # Recorded as a failed trial (a problem in the summary); the run goes on.
                        trial = Trial(
                            trial_name(kind, value),
                            round_,
                            0,
                            0.0,
                            failed=1,
                            note=f"error: {error}",
                        )
                    show(trial)
                    trials.append(trial)
            out["trials"] = [asdict(t) for t in trials]
            out["summary"] = report(trials, args, template.database.kind)
        finally:
            brokers.close()
            if template is not None and template.database.postgres_name:
                drop_postgres_database(template.database)
    out["seconds"] = round(time.monotonic() - started, 1)
    say(f"\ndone in {out['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if not out["summary"]["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
