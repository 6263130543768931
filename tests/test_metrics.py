"""``GET /metrics``: the token, the format, the HTTP and platform metrics; the worker's metrics
port; gunicorn's workers added up in multiprocess mode."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from mars_server import create_app
from mars_server.auth import signin
from mars_server.db import new_id, utcnow
from mars_server.events.models import Job, OutboxEvent
from mars_server.testing import TEST_SECRET_KEY, settings_for_tests
from tests import webhook_fakes
from tests.webhook_receiver import Answer, Receiver

#: About 12 s of the suite: started first under pytest-xdist (tests/conftest.py).
pytestmark = pytest.mark.slow(12)

TOKEN = "metrics-token-for-the-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
#: Two workers, each replaced after four requests.
GUNICORN_ARGS = ("-c", str(GUNICORN_CONF), "-w", "2", "--threads", "1")
GUNICORN_ARGS += ("--max-requests", "4", "--max-requests-jitter", "0")


@pytest.fixture
def app_config():
    return {"METRICS_TOKEN": TOKEN}


Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def scrape(app) -> Samples:
    response = app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples carrying ``labels`` (0 when there is none)."""
    return sum(
        v for have, v in samples.get(name, []) if all(have.get(k) == w for k, w in labels.items())
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def try_get(port: int, path: str, headers: dict[str, str] | None = None) -> str | None:
    try:
        status, body = http_get(port, path, headers)
    except OSError:
        return None
    return body if status == 200 else None


def process_env(database_url: str, instance: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARS_")}
    env.update(
        MARS_ENV="testing",
        MARS_SECRET_KEY=TEST_SECRET_KEY,
        MARS_DATABASE_URL=database_url,
        MARS_INSTANCE_PATH=str(instance),
        MARS_LOG_LEVEL="WARNING",
        **{f"MARS_{k}": v for k, v in settings.items()},
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the endpoint ---------------------------------------------------------------------------


def test_without_a_token_set_metrics_is_an_unknown_path(make_app):
    app = make_app()
    client = app.test_client()
    response = client.get("/metrics", headers=AUTH)
    unknown = client.get("/no-such-path")
    assert response.status_code == unknown.status_code == 404
    assert response.mimetype == "application/problem+json"
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(response.json) == strip(unknown.json)
    assert "mars_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token-of-enough-length",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {base64.b64encode(TOKEN.encode()).decode()}",
        TOKEN,
        "Bearer",
        "Bearer t\u00e9st",
    ],
)
def test_a_missing_or_wrong_token_is_a_401(app, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Cache-Control"] == "no-store"
    assert "mars_http" not in response.get_data(as_text=True)


def test_the_token_gets_the_prometheus_text_format(app):
    client = app.test_client()
    response = client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families["mars_http_requests"] == "counter"
    assert families["mars_http_request_duration_seconds"] == "histogram"
    assert families["mars_database_up"] == "gauge"
    openmetrics = client.get(
        "/metrics", headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).endswith("# EOF\n")


def test_scrapes_are_not_rate_limited(make_app):
    app = make_app(
        METRICS_TOKEN=TOKEN, RATELIMIT_DEFAULT="1/minute", RATELIMIT_ANONYMOUS="1/minute"
    )
    client = app.test_client()
    assert client.get("/api/v1/meta").status_code == 200
    assert client.get("/api/v1/meta").status_code == 429  # the limit is on
    for _ in range(3):
        response = client.get("/metrics", headers=AUTH)
        assert response.status_code == 200
        assert "RateLimit" not in response.headers


def test_metrics_is_not_part_of_the_api_document(app):
    paths = app.test_client().get("/api/v1/openapi.json").json["paths"]
    assert not [path for path in paths if "metrics" in path]


# --- HTTP metrics ---------------------------------------------------------------------------


def test_requests_are_counted_by_operation_method_and_status_class(app, client):
    before = scrape(app)
    assert client.get("/api/v1/meta").status_code == 200
    assert client.get("/api/v1/meta").status_code == 200
    assert client.get("/api/v1/projects/prj_doesnotexist42").status_code == 404
    assert client.head("/api/v1/meta").status_code == 200
    anonymous = app.test_client()
    assert anonymous.get("/no/such/path/42").status_code == 404
    assert anonymous.open("/healthz", method="BREW").status_code == 405
    assert anonymous.get("/healthz").status_code == 200
    after = scrape(app)

    def counted(**labels):
        name = "mars_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert counted(operation="get_meta", method="GET", status="2xx") == 2
    assert counted(operation="get_meta", method="HEAD", status="2xx") == 1
    assert counted(operation="get_project", method="GET", status="4xx") == 1
    assert counted(operation="unmatched", method="GET", status="4xx") == 1
    assert counted(operation="unmatched", method="other", status="4xx") == 1
    assert counted(operation="mars_health.healthz", method="GET", status="2xx") == 1
    durations = "mars_http_request_duration_seconds_count"
    assert (
        value(after, durations, operation="get_meta", method="GET", status="2xx")
        - value(before, durations, operation="get_meta", method="GET", status="2xx")
        == 2
    )
    assert (
        value(after, "mars_http_request_duration_seconds_bucket", operation="get_meta", le="+Inf")
        >= 2
    )
    # Never a path or an id in a label.
    labels = {v for samples in after.values() for have, _ in samples for v in have.values()}
    assert not [v for v in labels if "/" in v or "prj_" in v or "BREW" in v]


def test_a_server_error_is_counted_with_its_operation(make_app):
    app = make_app(METRICS_TOKEN=TOKEN)

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    before = scrape(app)
    assert app.test_client().get("/boom").status_code == 500
    after = scrape(app)
    name = "mars_http_requests_total"
    labels = {"operation": "boom", "method": "GET", "status": "5xx"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


# --- the database ---------------------------------------------------------------------------


def test_connections_in_use_follow_the_pool(app, db):
    db.session.remove()
    idle = value(scrape(app), "mars_database_connections_in_use")
    with db.engine.connect(), db.engine.connect():
        assert value(scrape(app), "mars_database_connections_in_use") == idle + 2
    assert value(scrape(app), "mars_database_connections_in_use") == idle


def test_jobs_by_task_and_state_and_the_outbox_lag(app, db, client, project_body):
    samples = scrape(app)
    assert value(samples, "mars_outbox_oldest_pending_seconds") == 0
    assert value(samples, "mars_jobs", task="mail.send", state="dead") == 0
    assert value(samples, "mars_database_up") == 1

    assert client.post("/api/v1/projects", json=project_body()).status_code == 201
    db.session.execute(
        sa.update(OutboxEvent).values(occurred_at=utcnow() - dt.timedelta(seconds=120))
    )
    for task, status in [
        ("mail.send", "dead"),
        ("mail.send", "dead"),
        ("mail.send", "queued"),
        ("webhooks.deliver", "running"),
        ("webhooks.deliver", "succeeded"),
        ("gone.task", "dead"),
    ]:
        db.session.add(Job(id=new_id("job"), task=task, kwargs={}, status=status, max_attempts=3))
    db.session.commit()

    samples = scrape(app)
    assert 120 <= value(samples, "mars_outbox_oldest_pending_seconds") < 180
    assert value(samples, "mars_jobs", task="mail.send", state="dead") == 2
    assert value(samples, "mars_jobs", task="mail.send", state="queued") == 1
    assert value(samples, "mars_jobs", task="mail.send", state="running") == 0
    assert value(samples, "mars_jobs", task="webhooks.deliver", state="running") == 1
    assert value(samples, "mars_jobs", task="webhooks.deliver", state="queued") == 0
    # A task no plugin declares any more still shows its jobs; succeeded ones are not kept.
    assert value(samples, "mars_jobs", task="gone.task", state="dead") == 1
    assert not [labels for labels, _ in samples["mars_jobs"] if labels["state"] == "succeeded"]

    db.session.execute(sa.update(OutboxEvent).values(dispatched_at=utcnow()))
    db.session.commit()
    assert value(scrape(app), "mars_outbox_oldest_pending_seconds") == 0


@pytest.mark.parametrize(
    "url",
    ["sqlite:///{tmp}/no/such/folder/mars.db", "postgresql://postgres@127.0.0.1:1/nothing"],
    ids=["sqlite", "postgresql"],
)
def test_a_database_that_does_not_answer_shows_as_down(tmp_path, monkeypatch, url):
    for name in [n for n in os.environ if n.startswith("MARS_")]:
        monkeypatch.delenv(name)
    app = create_app(
        settings_for_tests(url.format(tmp=tmp_path), tmp_path / "instance", METRICS_TOKEN=TOKEN)
    )
    samples = scrape(app)
    assert value(samples, "mars_database_up") == 0
    assert "mars_jobs" not in samples
    assert "mars_outbox_oldest_pending_seconds" not in samples
    assert "mars_http_requests_total" in samples


# --- platform metrics -----------------------------------------------------------------------


def test_sign_in_and_client_authentication_failures_are_counted(app, create_user):
    user = create_user(email="ada@example.test", password="correct horse battery")
    before = scrape(app)
    with pytest.raises(signin.SignInFailed):
        signin.authenticate("nobody@example.test", "whatever-it-is", "192.0.2.7")
    with pytest.raises(signin.SignInFailed):
        signin.authenticate(user.email, "not the password", "192.0.2.7")
    basic = base64.b64encode(b"app_nope:secret").decode()
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 401
    after = scrape(app)
    name = "mars_signin_failures_total"
    for reason in ("unknown_account", "wrong_password", "client_invalid"):
        assert value(after, name, reason=reason) - value(before, name, reason=reason) == 1
    assert "ada@example.test" not in str(after)


def test_the_projects_plugin_counts_projects_created(app, client, project_body):
    before = scrape(app)
    body = project_body(visibility="public")
    assert client.post("/api/v1/projects", json=body).status_code == 201
    assert client.post("/api/v1/projects", json=body).status_code == 409  # not created
    assert client.post("/api/v1/projects", json=project_body()).status_code == 201
    after = scrape(app)
    name = "mars_projects_created_total"
    assert value(after, name, visibility="public") - value(before, name, visibility="public") == 1
    assert value(after, name) - value(before, name) == 2


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def webhooks_app(make_app, monkeypatch):
    yield from webhook_fakes.app_with_things(
        make_app,
        monkeypatch,
        METRICS_TOKEN=TOKEN,
        WEBHOOKS_ALLOW_PRIVATE=True,
        PLUGINS={"webhooks": {"timeout_seconds": 1.0}},
    )


def test_webhook_delivery_attempts_by_outcome_and_latency(webhooks_app, receiver):
    app = webhooks_app
    from mars_server.db import db
    from mars_server.events import emit
    from mars_server.testing import run_due_jobs, signed_in_client

    client = signed_in_client(app)
    response = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url(), "events": [webhook_fakes.THING_CREATED]},
    )
    assert response.status_code == 201, response.json
    before = scrape(app)
    receiver.answer("/hook", Answer(200), Answer(500))
    for name in ("first", "second"):
        emit(webhook_fakes.THING_CREATED, {"id": "thing_1", "name": name})
        db.session.commit()
        run_due_jobs(app)
    receiver.wait_for(2)
    after = scrape(app)

    def counted(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert counted("mars_webhook_deliveries_total", outcome="success") == 1
    assert counted("mars_webhook_deliveries_total", outcome="failure") == 1
    assert counted("mars_webhook_delivery_duration_seconds_count") == 2
    assert counted("mars_webhook_delivery_duration_seconds_bucket", le="+Inf") == 2


# --- the worker's metrics port --------------------------------------------------------------


def test_mars_worker_serves_its_metrics_on_its_port(app, db, migrated_database, tmp_path):
    from mars_server.events import enqueue

    port = free_port()
    mars = shutil.which("mars", path=str(Path(sys.executable).parent)) or "mars"
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [mars, "worker", "--concurrency", "1", "--metrics-port", str(port)],
        env=process_env(migrated_database, tmp_path / "worker", WORKER_POLL_SECONDS="0.05"),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for(lambda: try_get(port, "/metrics"), what="the worker's metrics server")
        job_id = enqueue("events.purge")
        db.session.commit()

        def all_counted():
            # The worker also runs the jobs of the schedules that are due at its start.
            db.session.expire_all()
            jobs = db.session.scalars(sa.select(Job)).all()
            if not any(job.id == job_id and job.status == "succeeded" for job in jobs):
                return None
            body = try_get(port, "/metrics")
            samples = parse(body) if body else {}
            for task in {job.task for job in jobs}:
                done = sum(job.status == "succeeded" for job in jobs if job.task == task)
                attempts = value(samples, "mars_job_attempts_total", task=task)
                if (
                    value(samples, "mars_job_attempts_total", task=task, outcome="succeeded")
                    != done
                    or attempts != done
                ):
                    return None
                if value(samples, "mars_job_duration_seconds_count", task=task) != done:
                    return None
            return samples

        samples = wait_for(all_counted, what="the jobs' attempts in the worker's metrics")
        assert "mars_database_connections_in_use" in samples
        # The database gauges are the web's /metrics' only: Prometheus sees them once.
        assert "mars_jobs" not in samples and "mars_database_up" not in samples
    finally:
        stop(worker)
        log.close()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()


def test_a_celery_worker_needs_a_multiprocess_folder_for_its_metrics(make_app, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = make_app(JOBS_BACKEND="celery", CELERY_BROKER_URL="redis://127.0.0.1:6379/13")
    result = app.test_cli_runner().invoke(args=["worker", "--metrics-port", str(free_port())])
    assert result.exit_code == 2
    assert "PROMETHEUS_MULTIPROC_DIR" in result.output


# --- gunicorn, multiprocess mode ------------------------------------------------------------


def test_gunicorn_workers_are_added_up(migrated_database, tmp_path):
    """Two workers, each replaced after a few requests: /metrics, whichever process answers,
    counts every request any of them served."""
    port = free_port()
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = process_env(migrated_database, tmp_path / "web", METRICS_TOKEN=TOKEN)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    log = (tmp_path / "gunicorn.log").open("w")
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS, "-b", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for(lambda: listening(port), what="gunicorn's socket")
        sent = 0
        for _ in range(16):
            # No retry: a request sent is counted. While a replaced worker boots, a request
            # waits in the listen queue: a generous timeout.
            assert http_get(port, "/healthz", timeout=60)[0] == 200
            sent += 1
        pids = {path.name.rsplit("_", 1)[-1] for path in folder.glob("counter_*.db")}
        assert len(pids) >= 3, pids  # workers were replaced: several processes counted
        status, text = http_get(port, "/metrics", AUTH, timeout=60)
        assert status == 200
        samples = parse(text)
        healthz = {"operation": "mars_health.healthz", "method": "GET", "status": "2xx"}
        assert value(samples, "mars_http_requests_total", **healthz) == sent
        assert value(samples, "mars_http_request_duration_seconds_count", **healthz) == sent
        assert value(samples, "mars_database_up") == 1
        assert value(samples, "mars_database_connections_in_use") >= 0
        # This request too may wait for a replaced worker to boot: the same timeout.
        status, _ = http_get(port, "/metrics", timeout=60)
        assert status == 401
    finally:
        stop(gunicorn)
        log.close()
