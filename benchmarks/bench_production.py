"""Benchmark ``GET /api/v1/projects?limit=50`` as MARS is served in production.

Reuses ``bench_projects_list.py``'s pieces (database, gunicorn, wrk, CPU from ``/proc``).
In one run, on one database:

1. HTTP, side by side, ``wrk`` rounds in rotating order:
   - ``token``: MARS with a personal access token (``projects:read``), rate limits on (a
     policy too high ever to refuse: ``--rate``), the token cache warm, and
     ``MARS_REDIS_URL`` on loopback (``--redis-url``): the limiter and the token cache go
     through Redis, the limiter in leases (``MARS_RATELIMIT_LEASE_PERCENT``'s default: one
     caller this busy rarely costs a round trip);
   - ``exact``: the same with ``MARS_RATELIMIT_LEASE_PERCENT=0``: one round trip to Redis
     per request, as every caller of a small quota costs;
   - ``nolimit``: the same MARS and token with rate limits off (what the limiter costs);
   - ``anon``: the same MARS as ``token``, no token;
   - ``smorest``: ``smorest_app.py``, a plain flask-smorest + Flask-SQLAlchemy app serving
     the same list (no auth, no limits);
   - ``raw``: ``raw_app.py``, the hand-written Flask + SQLAlchemy Core app.
2. nginx (``deploy/nginx/mars.conf``, wrapped as ``tests/scaleout/cluster.py`` wraps it) in
   front of two MARS instances of ``--workers // 2`` workers each, against one instance of
   ``--workers`` workers served directly; both with the token, same wrk load. CPU per
   request counts nginx's processes too.
3. In process (no HTTP server): the token check with a warm cache (in-process cache, and
   Redis), against the same check with no cache; the rate limiter's check with Redis on
   loopback; and the whole request through Flask's test client with the limiter on and off
   (alternating, medians), whose difference is what the limiter adds to a request.

Usage::

    .venv/bin/python benchmarks/bench_production.py [--rows 100000] [--duration 10]
        [--rounds 5] [--redis-url redis://127.0.0.1:6379/5] [--skip-nginx] [--skip-micro]
        [--database-url postgresql://postgres@127.0.0.1:5432/mars_bench]

The Redis database named by ``--redis-url`` is emptied (FLUSHDB) at the start and the end.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench_projects_list as base  # noqa: E402

from tests.scaleout.cluster import nginx_binary, write_nginx_config  # noqa: E402

AIM_TOKEN = 0.85
AIM_MICRO_MS = 0.1
SCOPE = "projects:read"


def mars_env(settings: dict[str, str], redis_url: str, rate: str) -> dict[str, str]:
    env = {"MARS_" + k: v for k, v in settings.items()}
    env |= {
        "MARS_REDIS_URL": redis_url,
        "MARS_RATELIMIT_ENABLED": "true",
        "MARS_RATELIMIT_DEFAULT": rate,
        "MARS_RATELIMIT_ANONYMOUS": rate,
        "MARS_TOKEN_CACHE_SECONDS": "600",
    }
    return env


def make_token(env: dict[str, str]) -> str:
    """A user with no role and no project, and a personal access token of theirs."""
    mars = str(Path(sys.executable).parent / "mars")
    full = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")} | env
    subprocess.run(
        [mars, "users", "create", "bench@example.org"], env=full, check=True, capture_output=True
    )
    done = subprocess.run(
        [mars, "tokens", "create", "bench@example.org", "--scope", SCOPE, "--name", "bench"],
        env=full,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


# -- wrk with a header, over several server groups ------------------------------------------


class Target:
    """What wrk drives: a URL, an optional token, and the process groups serving it."""

    def __init__(self, name: str, url: str, groups: list[Any], token: str | None = None):
        self.name = name
        self.url = url
        self.groups = groups
        self.token = token

    def cpu(self) -> float | None:
        total = 0.0
        for group in self.groups:
            value = base.server_cpu_seconds(group)
            if value is None:
                return None
            total += value
        return total


def run_wrk(target: Target, args: argparse.Namespace, duration: int) -> str:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency"]
    if target.token:
        command += ["-H", f"Authorization: Bearer {target.token}"]
    command.append(target.url + f"{base.ENDPOINT}?limit={base.PAGE}")
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    )
    return done.stdout


def bench(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    """wrk on each target in turn, the order rotating; medians per target."""
    for target in targets:
        run_wrk(target, args, args.warmup)
    results: list[base.WrkResult] = []
    for round_ in range(1, args.rounds + 1):
        shift = (round_ - 1) % len(targets)
        for target in targets[shift:] + targets[:shift]:
            before = target.cpu()
            output = run_wrk(target, args, args.duration)
            after = target.cpu()
            result = base.parse_wrk(output, target.name, round_)
            if before is not None and after is not None and result.requests:
                result.cpu_ms_per_request = (after - before) * 1000 / result.requests
            results.append(result)
            base.say(
                f"  round {round_} {target.name:<9} {result.requests_per_second:8.1f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                f"cpu {result.cpu_ms_per_request or 0:5.2f} ms/req"
                + (f"  errors {result.errors}" if result.errors else "")
            )
            if result.errors:
                raise RuntimeError(f"{target.name} answered errors: {result.errors}")
    keys = ["requests_per_second", "p50_ms", "p99_ms", "cpu_ms_per_request"]
    median = {
        t.name: {
            k: statistics.median(getattr(r, k) or 0.0 for r in results if r.app == t.name)
            for k in keys
        }
        for t in targets
    }
    per_round = {
        t.name: [
            next(r for r in results if r.app == t.name and r.round == n).requests_per_second
            for n in range(1, args.rounds + 1)
        ]
        for t in targets
    }
    return {"rounds": [asdict(r) for r in results], "median": median, "per_round": per_round}


def print_table(title: str, summary: dict[str, Any], bases: list[str]) -> None:
    base.say()
    base.say(title)
    header = f"{'app':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/req':>12}"
    header += "".join(f"{'rps/' + b:>14}{'cpu ' + b + '/x':>14}" for b in bases)
    base.say(header)
    median = summary["median"]
    for name, m in median.items():
        line = (
            f"{name:<10}{m['requests_per_second']:>9.1f}{m['p50_ms']:>9.2f}"
            f"{m['p99_ms']:>9.2f}{m['cpu_ms_per_request']:>12.2f}"
        )
        for b in bases:
            rps = m["requests_per_second"] / median[b]["requests_per_second"]
            cpu = median[b]["cpu_ms_per_request"] / m["cpu_ms_per_request"]
            line += f"{rps:>14.3f}{cpu:>14.3f}"
        base.say(line)
    for b in bases:
        for name in median:
            if name == b:
                continue
            ratios = [
                x / y
                for x, y in zip(summary["per_round"][name], summary["per_round"][b], strict=True)
            ]
            base.say(
                f"  {name}/{b} req/s per round: {', '.join(f'{r:.3f}' for r in ratios)} "
                f"(median {statistics.median(ratios):.3f})"
            )


# -- nginx ----------------------------------------------------------------------------------


def start_nginx(folder: Path, ports: list[int]) -> tuple[base.Server, int]:
    """deploy/nginx/mars.conf with these upstream ports, wrapped as tests/scaleout does
    (without an access log: the benchmark's requests are not worth a line, nor its I/O)."""
    listen = base.free_port()
    wrapper = write_nginx_config(folder, ports, listen, access_log=False)
    nginx = nginx_binary()
    if nginx is None:
        raise SystemExit("nginx is not installed: `apt-get install nginx` or --skip-nginx")
    log = folder / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(folder), "-c", str(wrapper), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return base.Server("nginx", f"http://127.0.0.1:{listen}", process, log), listen


def gunicorn_on(name: str, env: dict[str, str], workers: int, log: Path) -> base.Server:
    return base.start_gunicorn(name, "mars_server:create_app()", env, workers, log)


# -- in process -----------------------------------------------------------------------------


def _median_us(fn: Any, number: int, clock: Any = time.perf_counter_ns, repeat: int = 7) -> float:
    """Median microseconds per call of ``fn`` by ``clock`` (wall time, or CPU time with
    ``time.process_time_ns``)."""
    for _ in range(number // 10):
        fn()
    samples = []
    for _ in range(repeat):
        started = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - started) / number / 1000)
    return statistics.median(samples)


def _alternate_us(
    fns: dict[str, Any], number: int, repeat: int = 15
) -> dict[str, tuple[float, float]]:
    """Median per-call microseconds of each function, batches interleaved: ``(wall, CPU)``
    (CPU: this process's, which the machine's other load does not inflate as much)."""
    for fn in fns.values():
        for _ in range(number // 5):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started, started_cpu = time.perf_counter_ns(), time.process_time_ns()
            for _ in range(number):
                fn()
            wall[name].append((time.perf_counter_ns() - started) / number / 1000)
            cpu[name].append((time.process_time_ns() - started_cpu) / number / 1000)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def micro(settings: dict[str, str], token: str, redis_url: str, rate: str) -> dict[str, float]:
    from flask import request

    import mars_server
    from mars_server.auth import tokens
    from mars_server.http import ratelimit

    out: dict[str, float] = {}
    header = {"Authorization": f"Bearer {token}"}

    def app_with(**extra: str) -> Any:
        return mars_server.create_app({**settings, **extra})

    apps = {
        "no cache": app_with(TOKEN_CACHE_SECONDS="0", RATELIMIT_ENABLED="false"),
        "in-process cache": app_with(TOKEN_CACHE_SECONDS="600", RATELIMIT_ENABLED="false"),
        "Redis cache": app_with(
            TOKEN_CACHE_SECONDS="600", RATELIMIT_ENABLED="false", REDIS_URL=redis_url
        ),
    }
    base.say()
    base.say("In process: the token check (tokens.actor_from_request), warm, per call")
    for name, app in apps.items():
        with app.test_request_context(base.ENDPOINT, headers=header):
            from mars_server.db import db

            def check() -> None:
                tokens.actor_from_request(request)
                db.session.rollback()  # as at a request's end: the no-cache case reads

            out[f"token check, {name} (us)"] = us = _median_us(check, 500)
            base.say(f"  {name:<18} {us:8.1f} us")

    base.say("In process: the rate limiter with Redis on loopback, per request")
    limited, exact = (
        app_with(
            TOKEN_CACHE_SECONDS="600",
            REDIS_URL=redis_url,
            RATELIMIT_ENABLED="true",
            RATELIMIT_DEFAULT=rate,
            RATELIMIT_ANONYMOUS=rate,
            RATELIMIT_LEASE_PERCENT=percent,
        )
        for percent in ("1", "0")
    )
    for name, app in (("leases", limited), ("exact", exact)):
        limiter = ratelimit.limiter_of(app)
        assert limiter is not None
        with app.test_request_context(base.ENDPOINT, headers=header):
            from mars_server.http.security import current_actor

            current_actor()  # resolved once, as the request's earlier hooks do
            out[f"limiter check, {name} (us)"] = us = _median_us(limiter.check, 1000)
            out[f"limiter check CPU, {name} (us)"] = cpu = _median_us(
                limiter.check, 1000, time.process_time_ns
            )
            base.say(f"  RateLimiter.check(), {name:<7} {us:8.1f} us, CPU {cpu:6.1f} us")
    assert isinstance(limiter.counters, ratelimit.RedisCounters)
    counters, policy = limiter.counters, limiter.default
    with exact.app_context():  # the keys' digests use the app's secret key
        keys = [[limiter.storage_key(f"user:{n}", policy)] for n in range(20_000)]
    calls = iter(keys)
    out["limiter Redis round trip (us)"] = us = _median_us(
        lambda: counters.hit(next(calls), [policy.window], [policy.quota]), 1000
    )
    base.say(f"  its Redis call (one Lua script) {us:6.1f} us")

    unlimited = app_with(TOKEN_CACHE_SECONDS="600", REDIS_URL=redis_url, RATELIMIT_ENABLED="false")
    url = f"{base.ENDPOINT}?limit={base.PAGE}"
    import raw_app
    import smorest_app

    clients = {
        "limiter on": limited.test_client(),
        "limiter exact": exact.test_client(),
        "limiter off": unlimited.test_client(),
        "smorest": smorest_app.create_app(
            settings["DATABASE_URL"], settings["SECRET_KEY"]
        ).test_client(),
        "raw": raw_app.create_app(settings["DATABASE_URL"], settings["SECRET_KEY"]).test_client(),
    }
    for client in clients.values():
        response = client.get(url, headers=header)
        assert response.status_code == 200, response.get_data(as_text=True)
    times = _alternate_us(
        {name: (lambda c=c: c.get(url, headers=header)) for name, c in clients.items()}, 40
    )
    base.say(
        "In process: the whole request (test client; MARS with the token and Redis), "
        "the limiter on, exact and off, and the two baselines"
    )
    for name, (us, cpu_us) in times.items():
        out[f"request, {name} (us)"] = us
        out[f"request CPU, {name} (us)"] = cpu_us
        base.say(
            f"  {name:<14} {us / 1000:8.3f} ms, CPU {cpu_us / 1000:8.3f} ms; "
            f"smorest/this {times['smorest'][0] / us:.3f}, raw/this {times['raw'][0] / us:.3f}"
        )
    off = times["limiter off"]
    for name, label in (("limiter on", "in leases"), ("limiter exact", "exactly")):
        on = times[name]
        out[f"limiter adds, {label} (us)"] = diff = on[0] - off[0]
        out[f"limiter adds CPU, {label} (us)"] = diff_cpu = on[1] - off[1]
        base.say(
            f"  the limiter {label} adds {diff / 1000:.3f} ms per request, "
            f"{diff_cpu / 1000:.3f} ms of CPU"
        )
    for app in [*apps.values(), limited, exact, unlimited]:
        with app.app_context():
            from mars_server.db import db

            db.engine.dispose()
    return out


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument(
        "--rate", default="1000000000/minute", help="the rate limits (never reached)"
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL (see bench_projects_list)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-nginx", action="store_true")
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if problems := base.missing_tools():
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mars-bench-prod-"))
    secret_key = secrets.token_urlsafe(36)
    report: dict[str, Any] = {"machine": base.machine(), "args": vars(args) | {"json": None}}
    base.say(f"machine: {report['machine']}")
    servers: list[base.Server] = []
    database: base.Database | None = None
    started = time.monotonic()
    flush_redis(args.redis_url)
    try:
        with base.cleanup_on_term():
            database = (
                base.create_postgres_database(args.database_url, "")
                if args.database_url
                else base.Database(f"sqlite:///{workdir / 'http.db'}")
            )
            base.say(f"building {database.kind} database")
            base.build_database(database, args.rows, secret_key, workdir / "instance-build")
            settings = base.mars_settings(database, secret_key, workdir / "instance")
            env = mars_env(settings, args.redis_url, args.rate)
            token = make_token(env)
            raw_env = {"RAW_DATABASE_URL": database.url, "RAW_SECRET_KEY": secret_key}

            if not args.skip_http:
                mars = gunicorn_on("MARS", env, args.workers, workdir / "mars.log")
                unlimited_env = env | {"MARS_RATELIMIT_ENABLED": "false"}
                unlimited = gunicorn_on("nolimit", unlimited_env, args.workers, workdir / "nl.log")
                exact_env = env | {"MARS_RATELIMIT_LEASE_PERCENT": "0"}
                exact = gunicorn_on("exact", exact_env, args.workers, workdir / "exact.log")
                smorest = base.start_gunicorn(
                    "smorest",
                    "smorest_app:create_app()",
                    raw_env,
                    args.workers,
                    workdir / "smorest.log",
                    pythonpath=HERE,
                )
                raw = base.start_gunicorn(
                    "raw",
                    "raw_app:create_app()",
                    raw_env,
                    args.workers,
                    workdir / "raw.log",
                    pythonpath=HERE,
                )
                servers += [mars, exact, unlimited, smorest, raw]
                for server in (mars, exact, unlimited, smorest, raw):
                    base.wait_ready(server)
                base.check_same_answers([mars, smorest], raw)
                _check_token(mars.url, token)
                targets = [
                    Target("token", mars.url, [mars], token),
                    Target("exact", exact.url, [exact], token),
                    Target("nolimit", unlimited.url, [unlimited], token),
                    Target("anon", mars.url, [mars]),
                    Target("smorest", smorest.url, [smorest]),
                    Target("raw", raw.url, [raw]),
                ]
                base.say("HTTP: every app serves the same items; running wrk")
                summary = bench(targets, args)
                report["http"] = summary
                for server in (mars, exact, unlimited, smorest, raw):
                    base.stop_server(server)
                print_table(
                    f"GET {base.ENDPOINT}?limit={base.PAGE}, {args.rows:,} projects "
                    f"({database.kind}), gunicorn -w {args.workers}, wrk -t{args.threads} "
                    f"-c{args.connections} -d{args.duration}s, {args.rounds} rounds",
                    summary,
                    ["raw", "smorest"],
                )
                token_ratio = (
                    summary["median"]["token"]["requests_per_second"]
                    / summary["median"]["raw"]["requests_per_second"]
                )
                verdict = "meets" if token_ratio >= AIM_TOKEN else "BELOW"
                base.say(f"token/raw req/s {token_ratio:.3f}: {verdict} the {AIM_TOKEN} aim")
                m = summary["median"]
                for name in ("token", "exact"):
                    added = m[name]["cpu_ms_per_request"] - m["nolimit"]["cpu_ms_per_request"]
                    per_round = [
                        x / y
                        for x, y in zip(
                            summary["per_round"][name], summary["per_round"]["nolimit"], strict=True
                        )
                    ]
                    base.say(
                        f"the limiter ({name}): {added:+.3f} ms of server CPU per request; "
                        f"{name}/nolimit "
                        f"req/s per round {', '.join(f'{r:.3f}' for r in per_round)} "
                        f"(median {statistics.median(per_round):.3f})"
                    )

            if not args.skip_nginx:
                half = max(1, args.workers // 2)
                one = gunicorn_on("one", env, args.workers, workdir / "one.log")
                first = gunicorn_on("first", env, half, workdir / "first.log")
                second = gunicorn_on("second", env, half, workdir / "second.log")
                servers += [one, first, second]
                for server in (one, first, second):
                    base.wait_ready(server)
                ports = [int(s.url.rsplit(":", 1)[1]) for s in (first, second)]
                nginx, _ = start_nginx(workdir, ports)
                servers.append(nginx)
                base.wait_ready(nginx)
                _check_token(nginx.url, token)
                targets = [
                    Target("direct", one.url, [one], token),
                    Target("nginx", nginx.url, [nginx, first, second], token),
                ]
                base.say(
                    f"nginx: two instances of {half} worker(s) behind nginx vs. one of "
                    f"{args.workers} directly"
                )
                summary = bench(targets, args)
                report["nginx"] = summary
                for server in (nginx, one, first, second):
                    base.stop_server(server)
                print_table("Through nginx (token, limiter on)", summary, ["direct"])

            if not args.skip_micro:
                report["micro"] = micro(settings, token, args.redis_url, args.rate)
    finally:
        for server in servers:
            base.stop_server(server)
        if database is not None and database.postgres_name and not args.keep:
            base.drop_postgres_database(database)
        flush_redis(args.redis_url)
        if args.keep:
            base.say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    base.say(f"\ndone in {report['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


def _check_token(url: str, token: str) -> None:
    """The token is accepted (its caller counts in the ``default`` policy, not the
    ``anonymous`` one), and the limiter answers."""
    import urllib.request

    req = urllib.request.Request(
        f"{url}{base.ENDPOINT}?limit=1", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:  # loopback only
        policy = response.headers.get("RateLimit-Policy", "")
        if not policy.startswith('"default"'):
            raise RuntimeError(f"RateLimit-Policy {policy!r}: is the limiter on, the token good?")
        json.load(response)


if __name__ == "__main__":
    sys.exit(main())
