"""The local stack a load test runs against, as production runs it on one machine.

PostgreSQL (a database of the run's own, made and dropped), Redis (one of its databases,
emptied), gunicorn serving MARS with the shipped ``deploy/gunicorn.conf.py`` behind nginx
with the shipped ``deploy/nginx/mars.conf``, an embedded
``mars worker``, and a webhook receiver on loopback (``benchmarks/webhook_receiver.py``,
which checks every signature). MARS runs with ``MARS_ENV=production`` and its production
defaults: argon2id's cost, the rate limits (in Redis), statement timeouts.

The people are made before the run: website users, automation users and admins, each with
a personal access token (written to ``people.json`` for the locustfile). Through the API, as
users would, each automation user subscribes a webhook endpoint to its projects' events and
creates a few projects with website users as members, so that updates notify them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
MARS = str(Path(sys.executable).with_name("mars"))
METRICS_TOKEN = "load-test-metrics-token-0123456789"
#: Projects each automation user makes before the run, and website users in each.
SEED_PROJECTS = 4
SEED_MEMBERS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    database_url: str
    redis_url: str
    work: Path
    people: dict[str, int]
    web_workers: int = 2
    worker_threads: int = 8
    base_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    received: Path = field(init=False)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()  # nothing may outlive the run: an old worker would take new jobs
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- setting up ---------------------------------------------------------------------

    def _database(self) -> str:
        url = sa.make_url(self.database_url)
        if not (url.database or "").endswith("_load"):
            raise SystemExit("the load test's database name must end in _load (it is dropped)")
        admin = sa.create_engine(
            url.set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        return url.render_as_string(hide_password=False)

    def _flush_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        port, listen = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{listen}"
        self._flush_redis()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
        self.env = clean | {
            "MARS_ENV": "production",
            "MARS_SECRET_KEY": secrets.token_urlsafe(48),
            "MARS_PUBLIC_URL": "https://mars.load.test",
            "MARS_DATABASE_URL": self._database(),
            "MARS_INSTANCE_PATH": str(self.work / "instance"),
            "MARS_REDIS_URL": self.redis_url,
            "MARS_MAIL_BACKEND": "files",
            "MARS_METRICS_TOKEN": METRICS_TOKEN,
            "MARS_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receiver is on loopback
            "MARS_LOG_LEVEL": "WARNING",
            "MARS_WORKER_CONCURRENCY": str(self.worker_threads),
            "WEB_CONCURRENCY": str(self.web_workers),
        }
        subprocess.run([MARS, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        people = self._make_people()
        self._spawn(
            "web",
            [
                sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                "-b", f"127.0.0.1:{port}",
            ],
        )  # fmt: skip
        self._spawn("worker", [MARS, "worker"])
        # gunicorn first: nginx marks an upstream that refuses its first connections as
        # down for a while (max_fails), which would fail the seeding's requests
        self._wait_ready(f"http://127.0.0.1:{port}")
        self._start_nginx(port, listen)
        self._wait_ready(self.base_url)
        self._subscribe_and_seed(people)
        (self.work / "people.json").write_text(json.dumps(people))

    def _start_nginx(self, upstream: int, listen: int) -> None:
        """deploy/nginx/mars.conf in front of gunicorn, as production has it: clients see
        nginx (its keep-alive, its retries of idempotent requests), never gunicorn."""
        sys.path.insert(0, str(ROOT))
        from tests.scaleout.cluster import nginx_binary, write_nginx_config

        nginx = nginx_binary()
        if nginx is None:
            raise SystemExit("nginx is not installed (Debian: apt-get install nginx)")
        folder = self.work / "nginx"
        folder.mkdir(exist_ok=True)
        # the shipped file names two instances; here one gunicorn serves as both
        config = write_nginx_config(folder, [upstream, upstream], listen, access_log=False)
        self._spawn("nginx", [nginx, "-p", str(folder), "-c", str(config), "-g", "daemon off;"])

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.work,
        )

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    log = (self.work / f"{name}.log").read_text(errors="replace")
                    raise SystemExit(f"{name} stopped:\n{log[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("MARS did not get ready within 60 s")

    def _make_people(self) -> dict[str, list[dict[str, str]]]:
        """Users and their tokens, made in the database as an operator's command would."""
        from mars_server import create_app
        from mars_server.testing import make_token, make_user

        os.environ.update({k: v for k, v in self.env.items() if k.startswith("MARS_")})
        try:
            app = create_app()
        finally:
            for key in [k for k in os.environ if k.startswith("MARS_")]:
                del os.environ[key]
        people: dict[str, list[dict[str, str]]] = {}
        with app.app_context():
            for kind, count in self.people.items():
                roles = ("admin",) if kind == "admin" else ("member",)
                people[kind] = []
                for n in range(count):
                    user = make_user(
                        app, email=f"{kind}{n}@load.test", display_name=f"{kind} {n}", roles=roles
                    )
                    token = make_token(app, user, name="load test")
                    people[kind].append({"user_id": user.id, "token": token})
        return people

    def _subscribe_and_seed(self, people: dict[str, list[dict[str, str]]]) -> None:
        """Each automation user subscribes a webhook endpoint to its projects' events; the
        receiver starts with their secrets; then each makes projects with website members."""
        receiver_port = free_port()
        secrets_ = []
        sessions = []
        for person in people.get("automation", []):
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {person['token']}"
            answer = http.post(
                self.base_url + "/api/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{receiver_port}/hook",
                    "events": ["project.created", "project.updated"],
                },
                timeout=30,
            )
            answer.raise_for_status()
            secrets_.append(answer.json()["secret"])
            sessions.append((person, http))
        self.received = self.work / "received"
        self.received.mkdir(exist_ok=True)
        self._spawn(
            "receiver",
            [
                sys.executable, str(ROOT / "benchmarks" / "webhook_receiver.py"),
                "--port", str(receiver_port), "--procs", "1", "--out", str(self.received),
            ],
            env=dict(os.environ) | {"BENCH_WEBHOOK_SECRETS": " ".join(secrets_)},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", receiver_port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the webhook receiver did not start")
            time.sleep(0.1)
        website = people.get("website", [])
        for n, (person, http) in enumerate(sessions):
            person["projects"] = []
            for p in range(SEED_PROJECTS):
                body = {"slug": f"seed-{n}-{p}", "name": f"Seed {n}.{p}", "visibility": "private"}
                project = http.post(self.base_url + "/api/v1/projects", json=body, timeout=30)
                project.raise_for_status()
                project_id = project.json()["id"]
                person["projects"].append(project_id)
                for m in range(min(SEED_MEMBERS, len(website))):
                    member = website[(n * SEED_PROJECTS + p + m) % len(website)]
                    added = http.post(
                        f"{self.base_url}/api/v1/projects/{project_id}/members",
                        json={"user_id": member["user_id"], "role": "member"},
                        timeout=30,
                    )
                    added.raise_for_status()

    # --- watching -----------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        """The processes' memory, the database's connections, the outbox and the job queue."""
        rss = {"web": 0, "worker": 0}
        for name in ("web", "worker"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(process.pid)
                for member in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss[name] += member.memory_info().rss
        url = sa.make_url(self.env["MARS_DATABASE_URL"]).set(drivername="postgresql+psycopg")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            connections = dict(
                connection.execute(
                    sa.text(
                        "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " GROUP BY 1"
                    )
                ).all()
            )
            lag = connection.scalar(
                sa.text(
                    "SELECT coalesce(extract(epoch FROM now() - min(occurred_at)), 0)"
                    " FROM mars_events WHERE dispatched_at IS NULL"
                )
            )
            queued = connection.scalar(
                sa.text(
                    "SELECT count(*) FROM mars_jobs WHERE status = 'queued' AND run_at <= now()"
                )
            )
            running = connection.scalar(
                sa.text("SELECT count(*) FROM mars_jobs WHERE status = 'running'")
            )
            pending = connection.scalar(
                sa.text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            )
        engine.dispose()
        return {
            "time": time.time(),
            "web_rss": rss["web"],
            "worker_rss": rss["worker"],
            "connections": sum(connections.values()),
            "idle_in_transaction": connections.get("idle in transaction", 0),
            "outbox_lag": float(lag or 0),
            "queued_jobs": int(queued or 0),
            "running_jobs": int(running or 0),
            "pending_deliveries": int(pending or 0),
        }

    def deliveries(self) -> dict[str, int]:
        """What the database says of webhook deliveries, by status."""
        url = sa.make_url(self.env["MARS_DATABASE_URL"]).set(drivername="postgresql+psycopg")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
            ).all()
        engine.dispose()
        return {status: int(count) for status, count in rows}

    def received_ids(self) -> list[tuple[str, bool]]:
        """What the receiver got (after :meth:`stop`): each ``webhook-id``, signature good."""
        seen = []
        for file in self.received.glob("ids-*.txt"):
            for line in file.read_text().splitlines():
                webhook_id, _, good = line.split()
                seen.append((webhook_id, good == "1"))
        return seen

    # --- tearing down -------------------------------------------------------------------

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def drop_database(self) -> None:
        url = sa.make_url(self.database_url)
        admin = sa.create_engine(
            url.set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        admin.dispose()
