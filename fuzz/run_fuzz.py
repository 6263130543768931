"""Fuzz MARS as deployed: gunicorn with the shipped settings, production mode, a real database,
and schemathesis' every phase (examples, coverage, fuzzing, stateful) over every operation,
once with an admin's token and once with a member's.

    .venv/bin/python fuzz/run_fuzz.py [--database-url postgresql://...] [--max-time 300]

It prints, per caller, schemathesis' summary and the figures that matter: the operations
tested, the requests sent, the 5xx answers, and the answers that break the OpenAPI document
(any failed check). It exits 1 when there is one. See fuzz/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: the checks that mean "a 5xx, or an answer the OpenAPI document does not allow"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset_postgres(url: str) -> None:
    import sqlalchemy as sa

    from mars_server.config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def mars(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "mars"), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"mars {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def declared_scopes(env: dict[str, str]) -> list[str]:
    spec = json.loads(mars(env, "openapi", "export"))
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    return sorted(flows["clientCredentials"]["scopes"])


def token(env: dict[str, str], email: str, scopes: list[str]) -> str:
    args = ["tokens", "create", email, "--name", "fuzz", "--expires-in", "2"]
    for scope in scopes:
        args += ["--scope", scope]
    return mars(env, *args).strip().splitlines()[-1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"MARS did not answer at {url}")


def summarise(report_dir: Path) -> dict[str, object]:
    """Figures from schemathesis' NDJSON event stream."""
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    failed: dict[str, list[str]] = {}
    operations: set[str] = set()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            body = json.loads(line).get("ScenarioFinished")
            if body is None:
                continue
            recorder = body.get("recorder", {})
            interactions = recorder.get("interactions", {})
            if interactions:
                operations.add(recorder["label"])
            for interaction in interactions.values():
                if interaction.get("response"):
                    statuses[interaction["response"]["status_code"]] += 1
            for checks in recorder.get("checks", {}).values():
                for check in checks:
                    if check.get("status", "").lower() == "failure":
                        failures[check["name"]] += 1
                        failed.setdefault(check["name"], []).append(recorder["label"])
    return {
        "operations": len(operations),
        "responses": sum(statuses.values()),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "failed_checks": dict(failures),
        "failed_operations": {name: sorted(set(labels)) for name, labels in failed.items()},
        "statuses": dict(sorted(statuses.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL to WIPE and use (default SQLite)")
    parser.add_argument("--max-time", type=int, default=300, help="seconds per caller")
    parser.add_argument("--workers", default="2", help="schemathesis workers")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mars-fuzz-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
    env.update(
        MARS_ENV="production",
        MARS_SECRET_KEY="fuzz-" + "k" * 40,
        MARS_PUBLIC_URL="https://mars.example.org",
        MARS_INSTANCE_PATH=str(work / "instance"),
        MARS_LOG_LEVEL="WARNING",
        MARS_MAIL_BACKEND="files",
        # Rate limits stay on (their 429 and header fields are part of every operation), at
        # a rate the run never reaches: a fuzzer answered 429 tests nothing.
        MARS_RATELIMIT_DEFAULT="1000000/minute",
        MARS_RATELIMIT_ANONYMOUS="1000000/minute",
    )
    if args.database_url:
        reset_postgres(args.database_url)
        env["MARS_DATABASE_URL"] = args.database_url
    else:
        env["MARS_DATABASE_URL"] = f"sqlite:///{work / 'mars.db'}"
    mars(env, "db", "upgrade")
    mars(env, "users", "create", "admin@fuzz.example", "--admin")
    mars(env, "users", "create", "member@fuzz.example")
    scopes = declared_scopes(env)
    callers = {
        "admin": token(env, "admin@fuzz.example", scopes),
        "member": token(env, "member@fuzz.example", scopes),
    }

    port = free_port()
    log = (work / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            "python:mars_server.ops.gunicorn_conf",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    results: dict[str, dict[str, object]] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz")
        for caller, secret in callers.items():
            report_dir = work / f"report-{caller}"
            command = [
                str(BIN / "st"),
                "--config-file",
                str(ROOT / "fuzz" / "schemathesis.toml"),
                "run",
                f"{base}/api/v1/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--checks",
                ",".join(CHECKS),
                "--max-time",
                str(args.max_time),
                "--workers",
                args.workers,
                "--header",
                f"Authorization: Bearer {secret}",
                # The stateful phase finds the caller's own token in list_my_tokens and
                # revokes it: every later request would be a 401 and test nothing.
                "--exclude-operation-id",
                "revoke_my_token",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
                "--report",
                "ndjson",
                "--report-dir",
                str(report_dir),
                "--output-sanitize",
                "true",
            ]
            print(f"== schemathesis as {caller}", flush=True)
            started = time.monotonic()
            done = subprocess.run(command, env=env, check=False, cwd=work)
            summary = summarise(report_dir)
            summary["exit_code"] = done.returncode
            summary["seconds"] = round(time.monotonic() - started)
            results[caller] = summary
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    print(json.dumps(results, indent=2))
    tracebacks = (work / "gunicorn.log").read_text().count("Traceback")
    print(f"tracebacks in the server log: {tracebacks}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    bad = tracebacks or any(
        r["server_errors"] or r["failed_checks"] or r["exit_code"] for r in results.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
