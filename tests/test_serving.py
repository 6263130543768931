"""The ways MARS is served: ``mars serve`` on embedded defaults, and gunicorn unchanged."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mars_server.testing import TEST_SECRET_KEY

#: About 40 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(40)

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(
    base: str, process: subprocess.Popen, timeout: float = 60
) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {process.stdout.read()}")
        try:
            response = requests.get(f"{base}/readyz", timeout=5)
        except requests.RequestException:  # not listening yet, or slow on a busy machine
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return response
        time.sleep(0.2)
    pytest.fail("server did not become ready")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
    return env | extra


def operator_token(env: dict[str, str]) -> str:
    """A user and a token made the operators' way, with the `mars` command."""
    for args in (
        ["users", "create", "ops@example.test"],
        [
            "tokens",
            "create",
            "ops@example.test",
            "--scope",
            "projects:write",
            "--scope",
            "projects:read",
        ],
    ):
        result = subprocess.run(
            [str(BIN / "mars"), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def test_mars_serve_migrates_sqlite_and_prints_the_docs_address(tmp_path):
    port = free_port()
    env = clean_env(MARS_INSTANCE_PATH=str(tmp_path), MARS_LOG_FORMAT="text")
    process = subprocess.Popen(
        [str(BIN / "mars"), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until_ready(base, process)
        assert ready.json()["checks"]["migrations"] == "ok"
        token = operator_token(env | {"MARS_ENV": "development"})
        created = requests.post(
            f"{base}/api/v1/projects",
            json={"slug": "served", "name": "Served"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert created.status_code == 201
        assert requests.get(f"{base}/api/docs", timeout=5).status_code == 200
        registered = requests.post(
            f"{base}/api/v1/accounts",
            json={"email": "new@example.test", "password": "a long enough passphrase"},
            timeout=5,
        )
        assert registered.status_code == 202
        # The verification mail is sent by the worker running inside `mars serve`.
        deadline = time.monotonic() + 30
        while not list((tmp_path / "mail").glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [mail] = (tmp_path / "mail").glob("*.eml")
        assert b"To: new@example.test" in mail.read_bytes()
    finally:
        output = stop(process)
    assert f"API docs: {base}/api/docs" in output
    assert f"GraphQL: {base}/api/v1/graphql (GraphiQL: {base}/api/graphql)" in output
    assert "Background jobs: embedded worker, 8 threads" in output
    assert (tmp_path / "mars.db").exists()
    assert (tmp_path / "secret_key").exists()


@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(BIN)) is None,
    reason="gunicorn is not installed (pip install 'mars-server[server]')",
)
def test_gunicorn_serves_create_app_unchanged(tmp_path):
    env = clean_env(
        MARS_ENV="production",
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_DATABASE_URL=f"sqlite:///{tmp_path / 'prod.db'}",
        MARS_INSTANCE_PATH=str(tmp_path),
        MARS_MAIL_BACKEND="files",
        MARS_PUBLIC_URL="https://mars.example.org",
    )
    upgrade = subprocess.run(
        [str(BIN / "mars"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "mars_server:create_app()"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        token = operator_token(env)
        auth = {"Authorization": f"Bearer {token}"}
        created = requests.post(
            f"{base}/api/v1/projects",
            json={"slug": "prod", "name": "Prod"},
            headers=auth,
            timeout=5,
        )
        assert created.status_code == 201
        listed = requests.get(f"{base}/api/v1/projects", headers=auth, timeout=5).json()
        assert [p["slug"] for p in listed["items"]] == ["prod"]
    finally:
        stop(process)


def exchange(port: int, message: bytes) -> tuple[int, str, bytes]:
    """Send ``message`` as it is over a socket; return the status, Content-Type and body."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(message)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed with part of a refused body unread
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields.get("Content-Type", ""), body


def get(target: str, fields: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: mars\r\n{fields}Connection: close\r\n\r\n".encode()


@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(BIN)) is None,
    reason="gunicorn is not installed (pip install 'mars-server[server]')",
)
def test_gunicorn_with_the_shipped_settings_leaves_the_limits_to_mars(tmp_path):
    """Under ``gunicorn -c python:mars_server.ops.gunicorn_conf``, a request over MARS's limits
    is answered by MARS (problem+json); gunicorn answers only what docs/http.md lists."""
    env = clean_env(
        MARS_ENV="production",
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_DATABASE_URL=f"sqlite:///{tmp_path / 'limits.db'}",
        MARS_INSTANCE_PATH=str(tmp_path),
        MARS_MAIL_BACKEND="files",
        MARS_PUBLIC_URL="https://mars.example.org",
        MARS_MAX_CONTENT_LENGTH="4096",
    )
    upgrade = subprocess.run(
        [str(BIN / "mars"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgrade.returncode == 0, upgrade.stderr
    token = operator_token(env)
    port = free_port()
    settings = "python:mars_server.ops.gunicorn_conf"
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", settings, "-w", "1", "-b", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    problem = "application/problem+json"
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        ok = exchange(port, get("/api/v1/projects?limit=5", f"Authorization: Bearer {token}\r\n"))
        assert ok[:2] == (200, "application/json")
        # MARS's limits (MARS_MAX_URL_LENGTH 4096, MARS_MAX_HEADER_FIELD_SIZE 8192,
        # MARS_MAX_HEADER_FIELDS 100), under gunicorn's (8190, 16384, 200) from the settings
        assert exchange(port, get("/api/v1/projects?q=" + "a" * 5000))[:2] == (414, problem)
        assert exchange(port, get("/api/v1/projects", f"X-Big: {'a' * 9000}\r\n"))[:2] == (
            431,
            problem,
        )
        many = "".join(f"X-Field-{n}: v\r\n" for n in range(150))
        assert exchange(port, get("/api/v1/projects", many))[:2] == (431, problem)
        body = b'{"slug": "big", "name": "Big", "description": "' + b"y" * 6000 + b'"}'
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
            for i in range(0, len(body), 1000)
        )
        status, content_type, answer = exchange(
            port,
            b"POST /api/v1/projects HTTP/1.1\r\nHost: mars\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n"
            b"Connection: close\r\n\r\n%s0\r\n\r\n" % (token.encode(), chunked),
        )
        assert (status, content_type) == (413, problem), answer
        status, content_type, answer = exchange(
            port,
            b"POST /api/v1/projects HTTP/1.1\r\nHost: mars\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n"
            b"Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n" % token.encode(),
        )
        assert (status, content_type) == (400, problem), answer  # not a 500
        # What only gunicorn answers, with its HTML page (docs/http.md): beyond its own caps,
        # and what is not HTTP.
        assert exchange(port, get("/api/v1/projects?q=" + "a" * 9000))[:2] == (414, "text/html")
        assert exchange(port, get("/api/v1/projects", f"X-Big: {'a' * 17000}\r\n"))[:2] == (
            431,
            "text/html",
        )
        assert exchange(port, get("/api/v1/projects", "X-Ctl: a\x01b\r\n"))[:2] == (
            400,
            "text/html",
        )
    finally:
        stop(process)


def test_production_refuses_to_start_without_a_secret(tmp_path):
    result = subprocess.run(
        [str(BIN / "mars"), "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(MARS_INSTANCE_PATH=str(tmp_path)),
    )
    assert result.returncode == 1
    assert "MARS_SECRET_KEY: required in production" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("backend", "commands"),
    [("embedded", [["worker", "-c", "2"]]), ("celery", [["relay"], ["worker", "-c", "1"]])],
)
def test_mars_worker_sends_the_mail_an_operator_queued(tmp_path, backend, commands):
    """The operators' processes, as deployed: ``mars worker`` (and with Celery ``mars relay``)
    run the mail job ``mars users reset-password`` queued, and stop cleanly on SIGTERM."""
    env = clean_env(
        MARS_ENV="production",
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        MARS_INSTANCE_PATH=str(tmp_path),
        MARS_MAIL_BACKEND="files",
        MARS_PUBLIC_URL="https://mars.example.org",
        MARS_JOBS_BACKEND=backend,
        MARS_WORKER_POLL_SECONDS="0.2",
    )
    if backend == "celery":
        if not reachable("127.0.0.1", 6379):
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        env["MARS_CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/14"
        import redis

        from tests.redis_db import empty_redis_database

        empty_redis_database(redis.Redis.from_url(env["MARS_CELERY_BROKER_URL"]))
    for args in (
        ["db", "upgrade"],
        ["users", "create", "ops@example.test"],
        ["users", "reset-password", "ops@example.test"],
    ):
        done = subprocess.run(
            [str(BIN / "mars"), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "mail").glob("*.eml"))  # queued, not sent
    processes = [
        subprocess.Popen(
            [str(BIN / "mars"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for args in commands
    ]
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "mail").glob("*.eml")) and time.monotonic() < deadline:
            for process in processes:
                assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)
        [mail] = (tmp_path / "mail").glob("*.eml")
        assert b"To: ops@example.test" in mail.read_bytes()
    finally:
        outputs = [stop(process) for process in processes]
    assert [process.returncode for process in processes] == [0] * len(processes), outputs


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True
