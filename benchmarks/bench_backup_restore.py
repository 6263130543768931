"""How long ``mars backup`` takes on a database of about 1 GB, against the bare tools.

For each backend, a database is brought to head with MARS's migrations and filled with
audit entries (the table that grows most in a real MARS: one row per change, each with its
details) until it holds ``--size-mb`` megabytes, then sealed into the hash chain with
``mars audit seal``, as the workers do. Then, as an operator would, through the ``mars``
command in a subprocess:

- ``create``: ``mars backup create --out FILE``;
- ``verify``: ``mars backup verify FILE`` (restores into a scratch database and checks the
  checksum, heads, rows and the whole audit chain);
- ``restore``: ``mars backup restore FILE --into URL`` into an empty database (which checks
  the same after restoring).

Baselines, in the same run, on the same data: for SQLite, copying the database file
(``shutil.copyfile``: the disk's own speed, the floor of any restore); for PostgreSQL,
``pg_dump --format=custom`` and ``pg_restore`` into an empty database, alone. Each step
runs ``--rounds`` times; the medians and the ratios to the baselines are printed.

Usage::

    .venv/bin/python benchmarks/bench_backup_restore.py [--size-mb 1000] [--rounds 2]
        [--backends sqlite,postgresql]
        [--database-url postgresql://postgres@127.0.0.1:5432/bench_backup]

The PostgreSQL database (its name must start with ``bench_``) and ``<name>_restored`` are
made and dropped by the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
MARS = str(Path(sys.executable).with_name("mars"))
BATCH = 20_000
WORDS = [f"{random.randbytes(3).hex()}{w}" for w in ("a", "be", "sea", "dee", "e") * 400]


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def mars_env(url: str, instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
    env.update(
        MARS_ENV="development",
        MARS_SECRET_KEY="bench-secret-key-0123456789-0123456789",
        MARS_INSTANCE_PATH=str(instance),
        MARS_DATABASE_URL=url,
        MARS_LOG_LEVEL="WARNING",
        MARS_DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
    return env


def size_of(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            pages = connection.scalar(sa.text("PRAGMA page_count"))
            return int(pages) * int(connection.scalar(sa.text("PRAGMA page_size")))
        return int(connection.scalar(sa.text("SELECT pg_database_size(current_database())")))


def fill(url: str, target_bytes: int) -> int:
    """Audit entries until the database holds ``target_bytes``; returns how many."""
    from mars_server.db import new_id

    engine = sa.create_engine(url)
    table = sa.table(
        "mars_audit_log",
        *(sa.column(name) for name in ("id", "occurred_at", "actor_id", "action", "target")),
        sa.column("address"),
        sa.column("user_agent"),
        sa.column("request_id"),
        sa.column("details", sa.JSON),
    )
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = 0
    while size_of(engine) < target_bytes:
        batch = [
            {
                "id": new_id("aud"),
                "occurred_at": start + dt.timedelta(milliseconds=rows + i),
                "actor_id": f"usr_{(rows + i) % 5000:026d}",
                "action": "project.updated",
                "target": f"prj_{(rows + i) % 90000:026d}",
                "address": "203.0.113.7",
                "user_agent": "mars-sdk/0.1 python-requests/2.32",
                "request_id": f"{rows + i:032x}",
                "details": {
                    "changes": {
                        "name": [f"Apollo {rows + i}", f"Apollo {rows + i + 1}"],
                        "visibility": ["private", "public"],
                    },
                    # text that compresses as people's text does, not as a run of one letter
                    "description": " ".join(random.choices(WORDS, k=30)),
                },
            }
            for i in range(BATCH)
        ]
        with engine.begin() as connection:
            connection.execute(sa.insert(table), batch)
        rows += BATCH
    engine.dispose()
    return rows


def drop_postgres(url: sa.URL, *names: str) -> None:
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def create_postgres(url: sa.URL, name: str) -> None:
    drop_postgres(url, name)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def bench(backend: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    instance = work / f"instance-{backend}"
    if backend == "sqlite":
        url = f"sqlite:///{work / 'mars.db'}"
    else:
        base = sa.make_url(args.database_url)
        assert base.database and base.database.startswith("bench_"), "a bench_ database"
        create_postgres(base, base.database)
        url = base.render_as_string(hide_password=False)
    env = mars_env(url, instance)
    run([MARS, "db", "upgrade"], env)
    rows = fill(url.replace("postgresql://", "postgresql+psycopg://"), args.size_mb * 1_000_000)
    seal = run([MARS, "audit", "seal"], env)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    size = size_of(engine)
    engine.dispose()
    print(
        f"{backend}: {rows} audit entries, {size / 1e6:.0f} MB, sealed in {seal:.0f} s", flush=True
    )

    timings: dict[str, list[float]] = {}

    def timed(name: str, seconds: float) -> None:
        timings.setdefault(name, []).append(seconds)
        print(f"  {name:<16} {seconds:7.1f} s", flush=True)

    archive_size = 0
    for round_ in range(args.rounds):
        archive = work / f"{backend}-{round_}.tar"
        timed("create", run([MARS, "backup", "create", "--out", str(archive)], env))
        archive_size = archive.stat().st_size
        timed("verify", run([MARS, "backup", "verify", str(archive)], env))
        if backend == "sqlite":
            target = work / "restored.db"
            target.unlink(missing_ok=True)
            into = f"sqlite:///{target}"
            started = time.perf_counter()
            shutil.copyfile(work / "mars.db", work / "copy.db")
            timed("baseline copy", time.perf_counter() - started)
            (work / "copy.db").unlink()
        else:
            restored = f"{base.database}_restored"
            create_postgres(base, restored)
            into = base.set(database=restored).render_as_string(hide_password=False)
            dump = work / "bare.pgdump"
            timed("baseline dump", run(["pg_dump", "-Fc", "-f", str(dump), "-d", url], env))
            timed(
                "baseline restore",
                run(["pg_restore", "--no-owner", "-d", into, str(dump)], env),
            )
            dump.unlink()
            create_postgres(base, restored)
        timed("restore", run([MARS, "backup", "restore", str(archive), "--into", into], env))
        archive.unlink()
    if backend == "postgresql":
        drop_postgres(base, base.database, f"{base.database}_restored")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {"backend": backend, "rows": rows, "size": size, "archive": archive_size, **medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/bench_backup"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="mars-bench-backup-") as folder:
        for backend in args.backends.split(","):
            results.append(bench(backend, args, Path(folder)))
    print("\nmedians:")
    for result in results:
        print(json.dumps(result))
        if result["backend"] == "sqlite":
            base = result["baseline copy"]
            print(
                f"  sqlite {result['size'] / 1e6:.0f} MB: create {result['create']:.1f} s "
                f"({result['create'] / base:.1f}x a file copy), verify {result['verify']:.1f} s, "
                f"restore {result['restore']:.1f} s ({result['restore'] / base:.1f}x a file copy)"
            )
        else:
            print(
                f"  postgresql {result['size'] / 1e6:.0f} MB: create {result['create']:.1f} s "
                f"({result['create'] / result['baseline dump']:.2f}x bare pg_dump), verify "
                f"{result['verify']:.1f} s, restore {result['restore']:.1f} s "
                f"({result['restore'] / result['baseline restore']:.2f}x bare pg_restore)"
            )


if __name__ == "__main__":
    main()
