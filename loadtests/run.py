"""Run a load test of MARS against a local stack (loadtests/README.md).

    python loadtests/run.py --users 60 --duration 5m            # the published load run
    python loadtests/run.py --soak --duration 30m --users 30    # the soak run, with a plot
    python loadtests/run.py --smoke                             # 30 s, as CI runs it

It starts the stack (``stack.py``), runs Locust headless against it, samples the stack every
few seconds (memory, connections, outbox lag, job queue), lets the workers finish, and
prints per operation: requests, failures, requests per second, p50/p95/p99. It exits 1 when
any request failed or got a 5xx, when webhook deliveries were lost or badly signed, when a
connection stayed in a transaction after the run, and, with ``--soak``, when the stack grew
(memory over 10% after warm-up, the outbox lag or the job queue rising).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stack import Stack  # noqa: E402

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/mars_load"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
#: Memory may grow this much from the end of the warm-up to the end of a soak run.
MEMORY_GROWTH = 0.10


def duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Sampler(threading.Thread):
    def __init__(self, stack: Stack, every: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.every = stack, every
        self.samples: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append(self.stack.sample())
            except Exception as error:  # a sample lost is reported, not fatal
                print(f"sample failed: {error}", file=sys.stderr)
            self.stopping.wait(self.every)


def locust(stack: Stack, args: argparse.Namespace, prefix: Path) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
        "--host", stack.base_url, "--users", str(args.users),
        "--spawn-rate", str(args.spawn_rate), "--run-time", f"{args.seconds}s",
        "--csv", str(prefix), "--csv-full-history", "--only-summary",
        "--stop-timeout", "10", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = stack.env | {"MARS_LOAD_PEOPLE": str(stack.work / "people.json")}
    log = prefix.with_name("locust.log")
    with log.open("wb") as out:
        done = subprocess.run(command, env=env, cwd=HERE, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode not in (0, 1):  # 1: some requests failed, reported below
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    return done.returncode


def report(prefix: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with open(f"{prefix}_stats.csv", encoding="utf-8") as file:
        stats = list(csv.DictReader(file))
    with open(f"{prefix}_failures.csv", encoding="utf-8") as file:
        failures = list(csv.DictReader(file))
    print(
        f"\n{'operation':<42} {'reqs':>7} {'fail':>5} {'req/s':>7} {'p50':>6} {'p95':>6} {'p99':>6}"
    )
    for row in stats:
        name = row["Name"] if row["Type"] else "all"
        print(
            f"{name:<42} {row['Request Count']:>7} {row['Failure Count']:>5} "
            f"{float(row['Requests/s']):>7.1f} {row['50%']:>7} {row['95%']:>7} {row['99%']:>7}"
        )
    return stats, failures


def soak_problems(samples: list[dict[str, Any]], warmup: float) -> list[str]:
    """What grew: memory past 10% after warm-up, the outbox lag or the job queue rising."""
    start = samples[0]["time"]
    settled = [s for s in samples if s["time"] - start >= warmup]
    if len(settled) < 8:
        return ["too few samples after the warm-up to judge growth"]
    quarter = len(settled) // 4
    first, last = settled[:quarter], settled[-quarter:]
    problems = []
    for key in ("web_rss", "worker_rss"):
        before = statistics.median(s[key] for s in first)
        after = statistics.median(s[key] for s in last)
        if before and after > before * (1 + MEMORY_GROWTH):
            problems.append(f"{key}: {before / 1e6:.0f} MB -> {after / 1e6:.0f} MB after warm-up")
    for key, floor in (("outbox_lag", 5.0), ("queued_jobs", 50)):
        before = statistics.median(s[key] for s in first)
        after = statistics.median(s[key] for s in last)
        if after > floor and after > 2 * before:
            problems.append(f"{key} rising: {before:g} -> {after:g}")
    return problems


def plot(samples: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = samples[0]["time"]
    minutes = [(s["time"] - start) / 60 for s in samples]
    figure, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    axes[0].plot(minutes, [s["web_rss"] / 1e6 for s in samples], label="gunicorn (all workers)")
    axes[0].plot(minutes, [s["worker_rss"] / 1e6 for s in samples], label="mars worker")
    axes[0].set_ylabel("memory (RSS, MB)")
    axes[0].legend(loc="lower right")
    axes[1].plot(minutes, [s["connections"] for s in samples], label="all")
    axes[1].plot(minutes, [s["idle_in_transaction"] for s in samples], label="idle in transaction")
    axes[1].set_ylabel("PostgreSQL connections")
    axes[1].legend(loc="lower right")
    axes[2].plot(minutes, [s["outbox_lag"] for s in samples])
    axes[2].set_ylabel("outbox lag (s)")
    axes[3].plot(minutes, [s["queued_jobs"] for s in samples])
    axes[3].set_ylabel("due jobs queued")
    axes[3].set_xlabel("minutes")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def drain(stack: Stack, timeout: float = 300) -> dict[str, Any]:
    """Wait until the work the run left is done: the outbox, the due and running jobs, the
    webhook deliveries. The last sample, with how long it took (``drained_in``)."""
    started = time.monotonic()
    keys = ("outbox_lag", "queued_jobs", "running_jobs", "pending_deliveries")
    sample = stack.sample()
    while time.monotonic() - started < timeout and any(sample[key] for key in keys):
        time.sleep(1)
        sample = stack.sample()
    return sample | {"drained_in": time.monotonic() - started}


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the stack stops on the way out


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--spawn-rate", type=float, default=5)
    parser.add_argument("--duration", default="5m", help="e.g. 30s, 5m, 1h")
    parser.add_argument("--smoke", action="store_true", help="30 s, 10 users: CI's run")
    parser.add_argument("--soak", action="store_true", help="judge growth; plot the samples")
    parser.add_argument("--warmup", default="5m", help="soak: growth is judged after it")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE, help="its name ends in _load")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="a Redis database to empty")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="where the CSVs (and the plot) go")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.spawn_rate, args.duration = 10, 10, "30s"
    args.seconds = duration(args.duration)
    people = {"website": args.users, "automation": args.users, "admin": max(2, args.users // 10)}
    out = args.out or Path(tempfile.mkdtemp(prefix="mars-load-"))
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    stack = Stack(
        args.database_url, args.redis_url, out / "stack", people, web_workers=args.web_workers
    )
    with stack:
        sampler = Sampler(stack, every=2 if args.seconds <= 120 else 10)
        sampler.start()
        started = time.monotonic()
        code = locust(stack, args, out / "locust")
        elapsed = time.monotonic() - started
        sampler.stopping.set()
        sampler.join()
        settled = drain(stack)
        deliveries = stack.deliveries()
    stack.drop_database()
    stats, failures = report(out / "locust")
    total = next(row for row in stats if row["Name"] == "Aggregated")
    print(
        f"\n{args.users} users for {elapsed:.0f} s: {total['Request Count']} requests, "
        f"{float(total['Requests/s']):.1f}/s, {total['Failure Count']} failed "
        f"({100 * int(total['Failure Count']) / max(1, int(total['Request Count'])):.2f}%)"
    )
    received = stack.received_ids()
    bad = sum(1 for _, good in received if not good)
    print(
        f"webhooks: {sum(deliveries.values())} deliveries {deliveries}; the receiver got "
        f"{len(received)} ({len({i for i, _ in received})} distinct), {bad} badly signed"
    )
    samples = sampler.samples
    peak = max(samples, key=lambda s: s["connections"])
    print(
        f"stack: web {max(s['web_rss'] for s in samples) / 1e6:.0f} MB, worker "
        f"{max(s['worker_rss'] for s in samples) / 1e6:.0f} MB at most; {peak['connections']} "
        f"connections at most; outbox lag {max(s['outbox_lag'] for s in samples):.1f} s at "
        f"most; after the run {settled['connections']} connections, "
        f"{settled['idle_in_transaction']} idle in a transaction"
    )
    print(
        f"after the users stopped, the work they left (events, jobs, deliveries) was done in "
        f"{settled['drained_in']:.0f} s"
    )
    (out / "samples.json").write_text(json.dumps(samples))
    if code not in (0, 1):
        problems.append(f"locust exited {code}")
    if failures or int(total["Failure Count"]):
        problems.append(f"{total['Failure Count']} requests failed: {failures[:3]}")
    if any(re.search(r"\b5\d\d\b", row["Error"]) for row in failures):
        problems.append("5xx answers")
    if deliveries.get("failed") or set(deliveries) - {"succeeded"}:
        problems.append(f"webhook deliveries not all delivered: {deliveries}")
    if bad or len({i for i, _ in received}) < deliveries.get("succeeded", 0):
        problems.append("the receiver lacks deliveries MARS made, or some were badly signed")
    left = (
        "idle_in_transaction",
        "outbox_lag",
        "queued_jobs",
        "running_jobs",
        "pending_deliveries",
    )
    if any(settled[key] for key in left):
        problems.append(f"the stack did not settle after the run: {settled}")
    if args.soak:
        problems += soak_problems(samples, duration(args.warmup))
        picture = out / "soak.png"
        plot(samples, picture, f"MARS soak: {args.users} users, {args.duration}")
        print(f"plot: {picture}")
    print(f"results: {out}")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
