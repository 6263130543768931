"""Two MARS instances behind nginx, with PostgreSQL, Redis, the relay and two Celery workers.

What holds on one instance must hold across two: a rate limit is global, a revoked token is
refused everywhere at once, an idempotency key replays on the other instance, an event is
delivered once; and the cluster lives through a killed instance and a stopped Redis.
"""

from __future__ import annotations

import collections
import re
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from mars_server.http import ratelimit
from tests.scaleout.cluster import DEPLOY, wait_for_port
from tests.scaleout.conftest import LIMIT
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.mars_backend("postgresql")

READ = ("projects:read",)
#: how long a killed and restarted instance may wait for nginx to send it traffic again: the
#: upstream's fail_timeout in the shipped mars.conf, and the time to start.
REJOIN_SECONDS = (
    int(re.search(r"fail_timeout=(\d+)s", (DEPLOY / "nginx" / "mars.conf").read_text())[1]) + 10
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def newest_token_id(cluster, token: str) -> str:
    """The id of the newest token of ``token``'s user (``mars tokens create`` prints only
    the secret); ``token`` needs ``account:read``."""
    listed = requests.get(f"{cluster.url}/api/v1/me/tokens", headers=bearer(token), timeout=10)
    assert listed.status_code == 200, listed.text
    return max(listed.json()["items"], key=lambda t: t["created_at"])["id"]


def test_a_rate_limit_is_global_across_instances(cluster):
    token = cluster.token("limited@example.test", *READ)
    marker = uuid.uuid4().hex[:8]
    statuses = collections.Counter()
    remaining = []
    for n in range(LIMIT + 10):
        response = requests.get(
            f"{cluster.url}/api/v1/projects",
            headers=bearer(token) | {"X-Request-ID": f"rl{marker}{n:04d}"},
            timeout=10,
        )
        statuses[response.status_code] += 1
        if response.status_code == 429:
            assert response.headers["Content-Type"] == "application/problem+json"
            assert int(response.headers["Retry-After"]) > 0
        else:
            remaining.append(response.headers["RateLimit"])
    # N pass across both instances, not 2N.
    assert statuses == {200: LIMIT, 429: 10}, statuses
    # nginx spread them over both instances: each counted the other's requests.
    served = [
        sum(
            1
            for line in cluster.access_log(i)
            if str(line.get("request_id")).startswith(f"rl{marker}")
        )
        for i in range(2)
    ]
    print(
        f"a limit of {LIMIT}/minute across two instances: {statuses[200]} passed, "
        f"{statuses[429]} refused; the instances served {served} of those counted"
    )
    assert all(count >= 5 for count in served), served
    assert len(remaining) == LIMIT


def test_a_revoked_token_is_refused_by_the_other_instance_at_once(cluster):
    owner = cluster.token("revoker@example.test", "account:read", "account:write", *READ)
    victim = cluster.token("revoker@example.test", *READ)
    victim_id = newest_token_id(cluster, owner)
    other = cluster.instance(1)
    # The victim's resolution is cached on instance 1 (and shared through Redis).
    for _ in range(3):
        assert requests.get(f"{other}/api/v1/projects", headers=bearer(victim), timeout=10).ok
    revoked = requests.delete(
        f"{cluster.instance(0)}/api/v1/me/tokens/{victim_id}", headers=bearer(owner), timeout=10
    )
    assert revoked.status_code == 204, revoked.text
    # The very next request, on the other instance, and then through nginx on either.
    assert (
        requests.get(f"{other}/api/v1/projects", headers=bearer(victim), timeout=10).status_code
        == 401
    )
    for _ in range(4):
        response = requests.get(
            f"{cluster.url}/api/v1/projects", headers=bearer(victim), timeout=10
        )
        assert response.status_code == 401


def test_an_operator_disabling_a_user_is_seen_by_both_instances_at_once(cluster):
    token = cluster.token("disabled@example.test", *READ)
    for index in range(2):
        url = f"{cluster.instance(index)}/api/v1/projects"
        assert requests.get(url, headers=bearer(token), timeout=10).ok
    cluster.mars("users", "disable", "disabled@example.test")
    for index in range(2):
        url = f"{cluster.instance(index)}/api/v1/projects"
        assert requests.get(url, headers=bearer(token), timeout=10).status_code == 401


def test_an_idempotency_key_replays_on_the_other_instance(cluster):
    token = cluster.token("idem@example.test", "projects:write", *READ)
    key = str(uuid.uuid4())
    body = {"slug": f"idem-{key[:8]}", "name": "Made once"}
    headers = bearer(token) | {"Idempotency-Key": key}
    first = requests.post(
        f"{cluster.instance(0)}/api/v1/projects", json=body, headers=headers, timeout=10
    )
    assert first.status_code == 201, first.text
    again = requests.post(
        f"{cluster.instance(1)}/api/v1/projects", json=body, headers=headers, timeout=10
    )
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    listed = requests.get(f"{cluster.url}/api/v1/projects", headers=bearer(token), timeout=10)
    assert [p["slug"] for p in listed.json()["items"]].count(body["slug"]) == 1


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def hooked(cluster, receiver):
    """A user with a webhook on project events, pointing at ``receiver``."""
    token = cluster.token("hooked@example.test", "projects:write", "webhooks:write", *READ)
    made = requests.post(
        f"{cluster.url}/api/v1/webhooks",
        json={"url": receiver.url(), "events": ["project.created"]},
        headers=bearer(token),
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return token


def delivered_slugs(
    receiver: Receiver, slugs: set[str], timeout: float = 60
) -> collections.Counter:
    """How many deliveries each of ``slugs`` got, once all of them got one (or time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = collections.Counter()
        for request in list(receiver.requests):
            slug = request.json_payload()["data"]["slug"]
            if slug in slugs:
                counts[slug] += 1
        if set(counts) == slugs or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def create_projects(cluster, token: str, count: int, prefix: str) -> set[str]:
    slugs = {f"{prefix}-{n}" for n in range(count)}

    def create(slug: str) -> int:
        response = requests.post(
            f"{cluster.url}/api/v1/projects",
            json={"slug": slug, "name": slug},
            headers=bearer(token),
            timeout=10,
        )
        return response.status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(create, sorted(slugs))) == {201}
    return slugs


def test_each_event_is_delivered_once(cluster, receiver, hooked):
    slugs = create_projects(cluster, hooked, 12, "once")
    counts = delivered_slugs(receiver, slugs)
    assert set(counts) == slugs, f"missing: {slugs - set(counts)}"
    time.sleep(1)  # a duplicate would come now
    counts = delivered_slugs(receiver, slugs, timeout=0)
    assert set(counts.values()) == {1}, counts
    print(
        f"{len(slugs)} events through two instances, the relay and two Celery workers: "
        f"{sum(counts.values())} deliveries"
    )
    ids = [
        r.headers["webhook-id"]
        for r in receiver.requests
        if r.json_payload()["data"]["slug"] in slugs
    ]
    assert len(ids) == len(set(ids)) == len(slugs)


@dataclass
class Traffic:
    """GET requests through nginx from a few threads, until stopped; every outcome kept."""

    url: str
    threads: int = 4

    def __post_init__(self) -> None:
        self.outcomes: list[tuple[float, float, int | str]] = []  # (sent, answered, status)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status: int | str = session.get(self.url, timeout=10).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self._lock:
                self.outcomes.append((sent, time.monotonic(), status))

    def __enter__(self) -> Traffic:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def failures(self) -> list[tuple[float, float, int | str]]:
        with self._lock:
            return [o for o in self.outcomes if o[2] != 200]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)


def test_a_killed_instance_costs_only_its_requests_in_flight(cluster):
    web0 = cluster.processes["web0"]
    with Traffic(f"{cluster.url}/api/v1/projects") as traffic:
        time.sleep(1.5)
        before = traffic.count()
        killed_at = time.monotonic()
        web0.kill()
        time.sleep(3)
        after = traffic.count() - before
    failures = traffic.failures()
    print(
        f"killed one of two instances: {before} requests before, {after} after, "
        f"{len(failures)} failed: {failures}"
    )
    assert before > 20 and after > 20, (before, after)
    # Only what was in flight on the killed instance (at most one per thread) may fail ...
    assert len(failures) <= traffic.threads, failures
    # ... and nothing sent after the kill.
    assert all(sent <= killed_at for sent, _answered, _status in failures), failures

    cluster.start_web(0)  # it rejoins: nginx sends it traffic again ...
    restarted = time.monotonic()
    marker = uuid.uuid4().hex[:8]
    # ... once the upstream's fail_timeout (10 s in mars.conf) has passed since the failures
    # nginx saw when it was killed.
    deadline = restarted + REJOIN_SECONDS
    rejoined: list[dict] = []
    n = 0
    while not rejoined and time.monotonic() < deadline:
        for _ in range(4):
            n += 1
            response = requests.get(
                f"{cluster.url}/api/v1/projects",
                headers={"X-Request-ID": f"back{marker}{n:04d}"},
                timeout=10,
            )
            assert response.status_code == 200
        rejoined = [
            line
            for line in cluster.access_log(0)
            if str(line.get("request_id")).startswith(f"back{marker}")
        ]
        time.sleep(0.2)
    print(
        f"the restarted instance served again {time.monotonic() - killed_at:.1f} s after the kill"
    )
    assert rejoined, "the restarted instance got none of the traffic"


def test_redis_stopped_for_a_few_seconds(cluster, receiver, hooked):
    redis = cluster.processes["redis"]
    token = cluster.token("outage@example.test", "account:read", "account:write", *READ)
    victim = cluster.token("outage@example.test", *READ)
    victim_id = newest_token_id(cluster, token)
    assert requests.get(
        f"{cluster.instance(1)}/api/v1/projects", headers=bearer(victim), timeout=10
    ).ok

    with Traffic(f"{cluster.url}/api/v1/projects") as traffic:
        time.sleep(0.5)
        redis.kill()
        stopped_at = time.monotonic()
        # Authenticated calls go on (the token cache falls back to the database) ...
        assert requests.get(f"{cluster.url}/api/v1/me", headers=bearer(token), timeout=10).ok
        # ... a revocation made now is seen at once on the other instance ...
        revoked = requests.delete(
            f"{cluster.instance(0)}/api/v1/me/tokens/{victim_id}", headers=bearer(token), timeout=10
        )
        assert revoked.status_code == 204, revoked.text
        assert (
            requests.get(
                f"{cluster.instance(1)}/api/v1/projects", headers=bearer(victim), timeout=10
            ).status_code
            == 401
        )
        # ... and writes commit their events, to be delivered once Redis is back.
        slugs = create_projects(cluster, hooked, 3, "outage")
        time.sleep(max(0.0, 3 - (time.monotonic() - stopped_at)))
        redis.start()
        wait_for_port(cluster.redis_port, redis.popen, "redis-server")
        time.sleep(1)
    server_errors = [o for o in traffic.outcomes if isinstance(o[2], int) and o[2] >= 500]
    print(
        f"Redis stopped for 3 s under traffic: {len(traffic.outcomes)} requests, "
        f"{len(server_errors)} answered 5xx, {len(traffic.failures())} not 200"
    )
    assert not server_errors, server_errors[:5]
    assert not traffic.failures(), traffic.failures()[:5]

    # Everything recovers: limits count again, the revoked token stays refused, and the
    # events made during the outage are delivered.
    # (each instance tries Redis again once its back-off after the outage has passed).
    deadline = time.monotonic() + 2 * ratelimit.OUTAGE_BACKOFF_SECONDS + 5
    while True:
        counted = requests.get(f"{cluster.url}/api/v1/projects", headers=bearer(token), timeout=10)
        again = requests.get(f"{cluster.url}/api/v1/projects", headers=bearer(token), timeout=10)
        assert counted.ok and again.ok
        if "RateLimit" in counted.headers and "RateLimit" in again.headers:
            break
        assert time.monotonic() < deadline, "rate limits did not come back after the outage"
        time.sleep(0.5)
    assert remaining(again) < remaining(counted)
    for index in range(2):
        assert (
            requests.get(
                f"{cluster.instance(index)}/api/v1/projects", headers=bearer(victim), timeout=10
            ).status_code
            == 401
        )
    counts = delivered_slugs(receiver, slugs, timeout=90)
    assert set(counts) == slugs, f"missing: {slugs - set(counts)}"


def remaining(response: requests.Response, policy: str = "default") -> int:
    """The ``r`` parameter of ``policy``'s item in the response's RateLimit field."""
    for item in response.headers["RateLimit"].split(","):
        name, *parameters = (part.strip() for part in item.split(";"))
        if name == f'"{policy}"':
            return int(dict(p.partition("=")[::2] for p in parameters)["r"])
    raise AssertionError(response.headers["RateLimit"])


def test_the_processes_stop_cleanly(cluster):
    """SIGTERM: every process of the cluster ends on its own, none needs SIGKILL."""
    for name in ("worker0", "worker1", "relay", "web1"):
        process = cluster.processes[name]
        process.signal_group(signal.SIGTERM)
        process.popen.wait(30)
        assert process.popen.returncode == 0, (name, process.log()[-2000:])
