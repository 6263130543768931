"""MARS as deployed past one machine, on this one: the very files of ``deploy/``.

:class:`Cluster` starts a fresh PostgreSQL database on the local server, a Redis server of its
own (so that a test can stop it), two gunicorn instances of MARS with
``deploy/gunicorn.conf.py``, nginx with ``deploy/nginx/mars.conf`` in front of them, ``mars
relay`` and two Celery workers (``mars worker``). Everything is torn down by :meth:`stop`.

nginx runs the shipped file unchanged but for two things, rewritten on a copy: the port it
listens on and its upstream servers' ports (the file says 80, 8001 and 8002).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
import sqlalchemy as sa

from mars_server.testing import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
#: nginx's place on Debian, when it is not on PATH (it is in /usr/sbin).
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
READY_SECONDS = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_binary() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def write_nginx_config(
    folder: Path, ports: list[int], listen: int, *, access_log: bool = True
) -> Path:
    """``deploy/nginx/mars.conf`` with its upstream servers on ``ports`` and its server on
    ``listen``, written into ``folder`` with a minimal nginx.conf around it; that file's path.
    Without ``access_log``, nginx logs no request (the benchmarks)."""
    shipped = (DEPLOY / "nginx" / "mars.conf").read_text()
    upstream = re.compile(r"(upstream\s+mars\s*\{)(.*?)(\})", re.S)
    block = upstream.search(shipped)
    assert block, "deploy/nginx/mars.conf has no `upstream mars { ... }`"
    it = iter(ports)
    servers = re.sub(
        r"server\s+127\.0\.0\.1:\d+", lambda _m: f"server 127.0.0.1:{next(it)}", block[2]
    )
    assert next(it, None) is None, "the upstream should list two local instances"
    config = shipped[: block.start(2)] + servers + shipped[block.end(2) :]
    config, listens = re.subn(
        r"^(\s*)listen\s+80(\s|;)[^\n]*", rf"\1listen 127.0.0.1:{listen};", config, flags=re.M
    )
    assert listens == 1, "the active server block should have one `listen 80` line"
    (folder / "mars.conf").write_text(config)
    wrapper = folder / "nginx.conf"
    log = f"access_log {folder / 'nginx-access.log'};" if access_log else "access_log off;"
    wrapper.write_text(
        "worker_processes 2;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'nginx-error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    {log}\n"
        f"    client_body_temp_path {folder / 'nginx-body'};\n"
        f"    proxy_temp_path {folder / 'nginx-proxy'};\n"
        f"    include {folder / 'mars.conf'};\n"
        "}\n"
    )
    return wrapper


def wait_for_port(port: int, process: subprocess.Popen[Any] | None, what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"{what} did not listen on port {port} within {READY_SECONDS} s")


@dataclass
class Process:
    """A child process in a group of its own (gunicorn's master and workers die together)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the whole group, as an out-of-memory killer or a lost machine would."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(10)
        # Whatever the group left behind (a worker whose master was killed).
        self.signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """Two MARS instances behind nginx, with PostgreSQL, Redis, the relay and two workers."""

    def __init__(self, server_url: str, folder: Path, **settings: str) -> None:
        self.folder = folder
        self.server_url = server_url
        self.database = f"mars_scaleout_{uuid.uuid4().hex[:12]}"
        self.database_url = str(sa.engine.make_url(server_url).set(database=self.database))
        self.redis_port = free_port()
        self.web_ports = [free_port(), free_port()]
        self.nginx_port = free_port()
        self.url = f"http://127.0.0.1:{self.nginx_port}"
        self.env = (
            {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
            | {
                "MARS_ENV": "production",
                "MARS_SECRET_KEY": TEST_SECRET_KEY,
                "MARS_PUBLIC_URL": "https://mars.example.org",
                "MARS_DATABASE_URL": self.database_url,
                "MARS_INSTANCE_PATH": str(folder / "instance"),
                "MARS_MAIL_BACKEND": "files",
                "MARS_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "MARS_JOBS_BACKEND": "celery",
                "MARS_CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/1",
                # nginx is the one proxy in front: its X-Forwarded-For names the caller.
                "MARS_PROXY_FIX_HOPS": "1",
                "MARS_WEBHOOKS_ALLOW_PRIVATE": "true",
                "MARS_WEBHOOKS__TIMEOUT_SECONDS": "5",
                "MARS_LOG_LEVEL": "INFO",
            }
            | settings
        )
        self.processes: dict[str, Process] = {}

    # -- the parts --------------------------------------------------------------------------

    def _process(self, name: str, args: list[str], **env: str) -> Process:
        process = Process(name, args, self.env | env, self.folder / f"{name}.log")
        self.processes[name] = process
        process.start()
        return process

    def _create_database(self) -> None:
        engine = sa.create_engine(
            self.server_url.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        finally:
            engine.dispose()

    def _drop_database(self) -> None:
        engine = sa.create_engine(
            self.server_url.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def start_redis(self) -> None:
        process = self._process(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_for_port(self.redis_port, process.popen, "redis-server")

    def start_web(self, index: int) -> Process:
        port = self.web_ports[index]
        metrics_dir = self.folder / f"metrics-{index}"
        metrics_dir.mkdir(exist_ok=True)
        process = self._process(
            f"web{index}",
            [
                str(BIN / "gunicorn"),
                "-c",
                str(DEPLOY / "gunicorn.conf.py"),
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
            ],
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        wait_for_port(port, process.popen, f"web instance {index}")
        self.wait_ready(f"http://127.0.0.1:{port}")
        return process

    def wait_ready(self, base: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{base} did not become ready")

    def nginx_config(self) -> Path:
        """The shipped nginx file with this cluster's ports, wrapped in a minimal nginx.conf."""
        return write_nginx_config(self.folder, self.web_ports, self.nginx_port)

    def start_nginx(self) -> None:
        nginx = nginx_binary()
        assert nginx, "nginx is not installed (.ci/run installs Debian's nginx)"
        wrapper = self.nginx_config()
        process = self._process(
            "nginx", [nginx, "-p", str(self.folder), "-c", str(wrapper), "-g", "daemon off;"]
        )
        wait_for_port(self.nginx_port, process.popen, "nginx")

    def mars(self, *args: str) -> str:
        """Run a ``mars`` command against the cluster's database; its standard output."""
        done = subprocess.run(
            [str(BIN / "mars"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mars {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        (self.folder / "instance").mkdir(parents=True, exist_ok=True)
        self._create_database()
        self.start_redis()
        self.mars("db", "upgrade")
        for index in range(2):
            self.start_web(index)
        self.start_nginx()
        self._process("relay", [str(BIN / "mars"), "relay"])
        for index in range(2):
            self._process(f"worker{index}", [str(BIN / "mars"), "worker", "-c", "2"])

    def stop(self) -> dict[str, int | None]:
        codes = {name: process.stop() for name, process in reversed(self.processes.items())}
        with contextlib.suppress(Exception):
            self._drop_database()
        return codes

    # -- what the tests use ------------------------------------------------------------------

    def instance(self, index: int) -> str:
        return f"http://127.0.0.1:{self.web_ports[index]}"

    def token(self, email: str, *scopes: str) -> str:
        """A user (made once) and a new personal access token of theirs, the operators' way."""
        with contextlib.suppress(RuntimeError):
            self.mars("users", "create", email)
        args = ["tokens", "create", email]
        for scope in scopes:
            args += ["--scope", scope]
        return self.mars(*args).strip().splitlines()[-1]

    def access_log(self, index: int) -> list[dict[str, Any]]:
        """The requests web instance ``index`` logged (MARS's own access log)."""
        lines = []
        for line in self.processes[f"web{index}"].log().splitlines():
            if '"mars.access"' in line:
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines
