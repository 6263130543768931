"""gunicorn settings for MARS in production: copy to ``/etc/mars/gunicorn.conf.py`` and run

    gunicorn -c /etc/mars/gunicorn.conf.py -b 127.0.0.1:8001

with the ``MARS_*`` settings in the environment (docs/deployment.md). The address comes from
``-b`` (or gunicorn's own ``PORT`` variable: ``0.0.0.0:$PORT``); the command line and
``GUNICORN_CMD_ARGS`` win over this file, so ``--threads 8`` there overrides ``threads`` here.
``WEB_CONCURRENCY`` (gunicorn's own variable) sets the number of worker processes.

Run one gunicorn per address; several of them, on one host or many, behind nginx
(deploy/nginx/mars.conf). Each needs its own ``PROMETHEUS_MULTIPROC_DIR``, or none (then
each makes its own, see below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# MARS's own gunicorn settings (mars_server.ops.gunicorn_conf: the request limits, read from
# the MARS_* settings) and whether Redis is configured, read in a child process: the master
# never imports MARS. Workers are forked from the master, so a module the master imported is
# the one every worker runs; with MARS kept out of it, SIGHUP starts workers on the code
# installed now (a rolling upgrade), not on the code the master started with.
_READ_SETTINGS = """
import json
from mars_server.config import gather
from mars_server.ops import gunicorn_conf as shipped
names = ("wsgi_app", "limit_request_line", "limit_request_fields", "limit_request_field_size")
values = {name: getattr(shipped, name) for name in names}
values["redis"] = bool(gather().core.get("REDIS_URL"))
print(json.dumps(values))
"""


def _read_mars_settings() -> dict[str, Any]:
    # Without the metrics folder: the child's metrics would be left in it.
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", _READ_SETTINGS],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cannot read MARS's settings: {result.stderr.strip()}")
    values: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return values


_mars = _read_mars_settings()
wsgi_app = _mars["wsgi_app"]
limit_request_line = _mars["limit_request_line"]
limit_request_fields = _mars["limit_request_fields"]
limit_request_field_size = _mars["limit_request_field_size"]

# prometheus_client's multiprocess mode: every worker writes its values to files of this
# folder, and /metrics adds them up. It must be in the environment before a worker imports
# MARS (prometheus_client reads it at import).
_OWN_METRICS_PREFIX = "mars-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_OWN_METRICS_PREFIX)

# Processes and threads. The threaded worker keeps connections alive between requests (the
# sync worker closes every one), which nginx's upstream keepalive relies on. Processes use
# the CPUs, threads cover the time a request waits on PostgreSQL or Redis; each thread holds
# at most one database connection (docs/deployment.md, "What each setting costs").


def _cpus() -> int:
    """The CPUs this process may run on (fewer than the host's under taskset or cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


workers = int(os.environ.get("WEB_CONCURRENCY") or _cpus() + 1)
worker_class = "gthread"
threads = 4
# Each worker builds its own app after the fork: database connections, Redis clients and
# metrics are never shared between processes, and SIGHUP loads the code installed now.
preload_app = False

# Timeouts. A worker whose main loop stops answering for `timeout` seconds is killed and
# replaced; PostgreSQL's own statement timeout (MARS_DATABASE_STATEMENT_TIMEOUT_MS, 30 s)
# ends a slow query well before. On SIGTERM or SIGHUP, requests in flight get
# `graceful_timeout` seconds to finish (systemd's TimeoutStopSec sits above it).
timeout = 60
graceful_timeout = 30
# Above nginx's upstream keepalive_timeout (60 s in deploy/nginx/mars.conf): gunicorn must
# never close an idle connection just as nginx sends the next request on it.
keepalive = 75

# A worker is replaced after this many requests (a slow leak never grows for good); the
# jitter keeps the workers from restarting all at once.
max_requests = 10_000
max_requests_jitter = 1_000

# The workers' heartbeat files: on tmpfs where there is one, so a slow disk (or a container's
# overlay file system) never makes a live worker look dead. gunicorn makes them with mkstemp.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# MARS writes its own access log (`mars.access` lines, JSON, with the request id) and errors
# to standard error; gunicorn adds only its own messages there.
accesslog = None
errorlog = "-"
loglevel = "info"

# MARS reads X-Forwarded-For/-Proto/-Host itself, trusting exactly MARS_PROXY_FIX_HOPS
# proxies (werkzeug's ProxyFix). gunicorn trusts no one: with one hop-counted reading of those
# headers, a client that reaches gunicorn directly cannot claim https, whatever the hops.
forwarded_allow_ips = ""
# gunicorn 25+ opens a control socket in $HOME by default: two instances on one host would
# fight over it. Operators use signals (HUP reloads, TERM stops, TTIN/TTOU add/remove workers).
control_socket_disable = True


def _multiprocess_dir() -> Path:
    return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server: Any) -> None:
    """Before the first worker: empty the metrics folder; say what a lone process's state costs."""
    folder = _multiprocess_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # a previous run's values would be added to this one's
        stale.unlink()
    # Without Redis, revocation still reaches every worker at once (the token cache's
    # generation is a file of the instance folder, which the workers share), but rate limits
    # and the shared cache stay in each worker's memory.
    if server.cfg.workers > 1 and not _mars["redis"]:
        server.log.warning(
            "MARS_REDIS_URL is not set and %d workers run: each keeps its own rate-limit "
            "counters (a client gets its limit once per worker) and its own cache entries. "
            "Set MARS_REDIS_URL to share them (docs/deployment.md).",
            server.cfg.workers,
        )


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges (e.g. connections in use) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder this file made (one given by the operator stays).

    Told by its place and name, not by a flag: SIGHUP reads this file again, after the folder
    was made and put in the environment.
    """
    folder = _multiprocess_dir()
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith(_OWN_METRICS_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)
