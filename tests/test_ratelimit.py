"""API rate limits: policies, keys, the IETF RateLimit fields, 429 problems, the OpenAPI
document, ``mars ratelimit``, and Redis failing open."""

from __future__ import annotations

import logging
import threading
import time

import http_sf
import pytest
import sqlalchemy as sa
import time_machine
from flask import g

from mars_server import config as settings_sources
from mars_server.audit.models import AuditRecord
from mars_server.auth.secrets import new_personal_access_token
from mars_server.config import ConfigError
from mars_server.db import db as mars_db
from mars_server.http import Actor, Blueprint
from mars_server.http import ratelimit as rl
from mars_server.models import IdempotencyKey
from mars_server.testing import make_token, make_user, signed_in_client

PROBLEM = "application/problem+json"
#: A TCP port nothing listens on: Redis "down" without stopping the real one.
CLOSED_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["memory", "redis"])
def storage(request) -> dict[str, str]:
    """The settings of each storage: the process's memory, and the real Redis."""
    if request.param == "memory":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


@pytest.fixture
def limited(make_app, storage):
    """``limited(**settings)``: an app with these rate limits, on each storage."""
    return lambda **settings: make_app(**storage, **settings)


def strict_fields(response) -> list[tuple[str, dict, dict]]:
    """The RateLimit-Policy and RateLimit fields, parsed strictly as structured-field lists
    (draft-ietf-httpapi-ratelimit-headers): ``[(policy, {q, w}, {r, t})]``, in order."""
    policies = http_sf.parse(response.headers["RateLimit-Policy"].encode(), tltype="list")
    limits = http_sf.parse(response.headers["RateLimit"].encode(), tltype="list")
    assert [name for name, _ in policies] == [name for name, _ in limits]
    fields = []
    for (name, policy), (_, limit) in zip(policies, limits, strict=True):
        assert type(name) is str  # an sf-string, not a token
        assert set(policy) == {"q", "w"} and set(limit) == {"r", "t"}
        for value in (*policy.values(), *limit.values()):
            assert type(value) is int and value >= 0  # sf-integers, never decimals
        assert policy["w"] > 0 and limit["r"] <= policy["q"] and limit["t"] <= policy["w"]
        fields.append((name, policy, limit))
    return fields


def remaining(response) -> dict[str, int]:
    return {name: limit["r"] for name, _, limit in strict_fields(response)}


def test_n_requests_pass_then_429_problem(limited):
    app = limited(RATELIMIT_ANONYMOUS="3/minute")
    client = app.test_client()
    answers = [client.get("/api/v1/projects") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [remaining(a) for a in answers] == [{"anonymous": r} for r in (2, 1, 0, 0)]
    assert strict_fields(answers[0])[0][1] == {"q": 3, "w": 60}

    refused = answers[3]
    assert refused.content_type == PROBLEM
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert refused.json["type"] == "urn:mars:problem:rate-limited"
    assert refused.json["status"] == 429
    assert refused.json["retry_after"] == retry_after
    assert refused.json["violated-policies"] == ["anonymous"]
    # Retry-After is never earlier than the window's reset (the draft's SHOULD).
    assert retry_after >= strict_fields(refused)[0][2]["t"]


def test_users_do_not_share_and_tokens_of_one_user_do(limited, create_user, token_for):
    app = limited(RATELIMIT_DEFAULT="3/minute", RATELIMIT_ANONYMOUS="100/minute")
    alice, bob = create_user(), create_user()
    first, second = token_for(alice), token_for(alice)
    client = app.test_client()

    def get(token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.get("/api/v1/projects", headers=headers)

    assert [get(first).status_code for _ in range(2)] == [200, 200]
    assert get(second).status_code == 200  # alice's third, through her other token
    assert get(second).status_code == 429
    assert get(first).json["violated-policies"] == ["default"]
    # bob and the address (anonymous) have their own allowances.
    bob_answer = get(token_for(bob))
    assert bob_answer.status_code == 200 and remaining(bob_answer) == {"default": 2}
    assert remaining(get()) == {"anonymous": 99}


def test_invalid_credentials_count_against_the_address(limited, create_user, token_for):
    app = limited(RATELIMIT_ANONYMOUS="2/minute", RATELIMIT_DEFAULT="100/minute")
    client = app.test_client()
    wrong = {"Authorization": "Bearer mars_pat_not-a-real-token"}
    answers = [client.get("/api/v1/me", headers=wrong) for _ in range(2)]
    assert [a.status_code for a in answers] == [401, 401]
    assert remaining(answers[1]) == {"anonymous": 0}
    assert client.get("/api/v1/projects").status_code == 429  # the address is used up
    assert client.get("/api/v1/me", headers=wrong).status_code == 429
    signed_in = {"Authorization": f"Bearer {token_for(create_user())}"}
    assert client.get("/api/v1/projects", headers=signed_in).status_code == 200


def test_a_refused_credential_is_looked_up_once_per_request(limited):
    """The limiter asks who the caller is before the view does: an unknown token costs one
    database read, not one per asker."""
    app = limited(RATELIMIT_ANONYMOUS="100/minute")
    unknown = {"Authorization": f"Bearer {new_personal_access_token()}"}
    seen = []
    with app.app_context():
        engine = mars_db.engine

    def record(_conn, _cursor, statement, *_args):
        if "auth_personal_access_tokens" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert app.test_client().get("/api/v1/me", headers=unknown).status_code == 401
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 1


def test_callers_key(app):
    """A user acting through an OAuth app counts as that user; an app for itself, as itself."""
    with app.test_request_context("/api/v1/projects", environ_base={"REMOTE_ADDR": "2001:db8::7"}):
        assert rl.RateLimiter.caller_key() == "address:2001:db8::/64"
        g.mars_actor = Actor(kind="user", id="usr_1", scopes=frozenset(), client_id="cli_9")
        assert rl.RateLimiter.caller_key() == "user:usr_1"
        g.mars_actor = Actor(kind="client", id="cli_9", scopes=frozenset(), client_id="cli_9")
        assert rl.RateLimiter.caller_key() == "client:cli_9"


def test_addresses_behind_proxies_and_ipv6_networks(make_app):
    app = make_app(RATELIMIT_ANONYMOUS="1/minute")
    client = app.test_client()

    def get(address, forwarded=None):
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return client.get(
            "/api/v1/projects", headers=headers, environ_base={"REMOTE_ADDR": address}
        ).status_code

    assert get("2001:db8::1") == 200
    assert get("2001:db8::2") == 429  # the same /64
    assert get("2001:db8:0:1::1") == 200
    assert get("192.0.2.1") == 200
    # Without trusted proxies a client's X-Forwarded-For changes nothing.
    assert get("192.0.2.1", forwarded="198.51.100.9") == 429

    proxied = make_app(RATELIMIT_ANONYMOUS="1/minute", PROXY_FIX_HOPS=1).test_client()
    for address, status in (("198.51.100.1", 200), ("198.51.100.2", 200), ("198.51.100.1", 429)):
        answer = proxied.get(
            "/api/v1/projects",
            headers={"X-Forwarded-For": address},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        assert answer.status_code == status


def test_operation_limit_on_top_of_the_default(limited, create_user, token_for, project_body):
    app = limited(RATELIMIT_DEFAULT="100/minute")
    client = signed_in_client(app)
    policy = app.extensions["mars_ratelimit"].operations[("projects.Projects", "POST")]
    assert (policy.name, policy.quota, policy.window) == ("create_project", 30, 60)

    for _ in range(30):
        created = client.post("/api/v1/projects", json=project_body())
        assert created.status_code == 201, created.json
    assert remaining(created) == {"default": 70, "create_project": 0}
    refused = client.post(
        "/api/v1/projects", json=project_body(), headers={"Idempotency-Key": "one-more"}
    )
    assert refused.status_code == 429
    assert refused.json["violated-policies"] == ["create_project"]
    assert remaining(refused) == {"default": 69, "create_project": 0}
    # It did nothing: no project, and the key is not taken (the retry will do the work).
    listed = client.get("/api/v1/projects?limit=100")
    assert len(listed.json["items"]) == 30
    assert remaining(listed) == {"default": 68}  # other operations: the default policy only
    with app.app_context():
        claims = sa.select(sa.func.count()).select_from(IdempotencyKey)
        assert mars_db.session.execute(claims).scalar_one() == 0
    # Another user has a create_project allowance of their own.
    other = signed_in_client(app, create_user())
    assert other.post("/api/v1/projects", json=project_body()).status_code == 201


def test_replays_count(make_app, project_body):
    app = make_app(RATELIMIT_DEFAULT="3/minute")
    client = signed_in_client(app)
    key = {"Idempotency-Key": "replayed"}
    body = project_body()
    answers = [client.post("/api/v1/projects", json=body, headers=key) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert [a.headers.get("Idempotent-Replayed") for a in answers[:3]] == [None, "true", "true"]
    assert [remaining(a)["default"] for a in answers] == [2, 1, 0, 0]


def test_a_new_window_restores_the_quota(make_app):
    app = make_app(RATELIMIT_ANONYMOUS="2/minute")
    client = app.test_client()
    with time_machine.travel(1_900_000_000, tick=False) as traveller:
        assert [client.get("/api/v1/projects").status_code for _ in range(3)] == [200, 200, 429]
        traveller.shift(59)
        refused = client.get("/api/v1/projects")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        traveller.shift(1.5)
        assert remaining(client.get("/api/v1/projects")) == {"anonymous": 1}


def test_a_new_window_restores_the_quota_in_redis(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="2/second")
    client = app.test_client()
    answers = [client.get("/api/v1/projects") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 1}


def test_every_answer_of_an_operation_carries_the_fields(limited, project_body):
    app = limited(RATELIMIT_DEFAULT="50/minute", RATELIMIT_ANONYMOUS="50/minute")
    client = signed_in_client(app)
    created = client.post("/api/v1/projects", json=project_body())
    location, etag = created.headers["Location"], created.headers["ETag"]
    answers = {
        "201": created,
        "200": client.get(location),
        "304": client.get(location, headers={"If-None-Match": etag}),
        "404": client.get("/api/v1/projects/nope"),
        "405": client.put(location, json={}),
        "422": client.post("/api/v1/projects", json={}),
        "428": client.patch(location, json={"name": "x"}),
        "401": app.test_client().get("/api/v1/me"),
        "unknown path": client.get("/api/v1/no-such-thing"),
    }
    for name, answer in answers.items():
        assert strict_fields(answer), name
    assert [answers[s].status_code for s in ("304", "404", "405", "422", "428")] == [
        304,
        404,
        405,
        422,
        428,
    ]
    # Not limited: the OpenAPI document, the docs, health, CORS preflights.
    anonymous = app.test_client()
    for path in ("/api/v1/openapi.json", "/api/docs", "/healthz", "/readyz"):
        assert "RateLimit" not in anonymous.get(path).headers, path
    assert "RateLimit" not in anonymous.options("/api/v1/projects").headers
    assert remaining(anonymous.get("/api/v1/projects")) == {"anonymous": 48}


def test_the_openapi_document_declares_429_and_the_fields(app):
    spec = app.test_client().get("/api/v1/openapi.json").json
    components = spec["components"]
    assert set(components["headers"]) >= {"RateLimit", "RateLimit-Policy", "Retry-After"}

    def resolved(response):
        ref = response.get("$ref")
        return components["responses"][ref.rsplit("/", 1)[1]] if ref else response

    operations = [
        (f"{method.upper()} {path}", op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 20
    for where, operation in operations:
        responses = operation["responses"]
        assert "429" in responses, where
        too_many = resolved(responses["429"])
        assert "Retry-After" in too_many["headers"], where
        assert PROBLEM in too_many["content"], where
        for status, response in responses.items():
            headers = resolved(response).get("headers", {})
            assert {"RateLimit", "RateLimit-Policy"} <= set(headers), (where, status)
    create = spec["paths"]["/api/v1/projects"]["post"]
    assert create["x-mars-rate-limit"] == {"quota": 30, "window": 60}


def test_blueprint_rate_limit_refuses_a_bad_rate():
    blp = Blueprint("things", __name__)
    with pytest.raises(ValueError, match="not a rate"):
        blp.rate_limit("often")
    with pytest.raises(ValueError, match="policy name"):
        blp.rate_limit("1/minute", name='bad"name')


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"RATELIMIT_DEFAULT": "lots"}, "MARS_RATELIMIT_DEFAULT"),
        ({"RATELIMIT_ANONYMOUS": "60/minute;1000/day"}, "MARS_RATELIMIT_ANONYMOUS"),
        ({"RATELIMIT_ANONYMOUS": "0/minute"}, "MARS_RATELIMIT_ANONYMOUS"),
        ({"RATELIMIT_ENABLED": "sometimes"}, "MARS_RATELIMIT_ENABLED"),
    ],
)
def test_settings_are_validated(make_app, settings, named):
    with pytest.raises(ConfigError) as raised:
        make_app(**settings)
    assert [p for p in raised.value.problems if p.startswith(named + ":")], raised.value.problems


def test_settings_from_the_environment(tmp_path):
    raw = settings_sources.gather(environ={"MARS_RATELIMIT_DEFAULT": "every minute"})
    settings_sources.validate_core(raw, str(tmp_path))
    assert [p for p in raw.problems if "RATELIMIT" in p] == [
        "MARS_RATELIMIT_DEFAULT: 'every minute' is not a rate: write N/second, N/minute, "
        "N/hour or N/day (e.g. 600/minute), one rate only"
    ]
    raw = settings_sources.gather(environ={"MARS_RATELIMIT_ENABLED": "false"})
    assert settings_sources.validate_core(raw, str(tmp_path))["RATELIMIT_ENABLED"] is False


def test_disabled(make_app):
    app = make_app(RATELIMIT_ENABLED=False, RATELIMIT_ANONYMOUS="1/minute")
    client = app.test_client()
    answers = [client.get("/api/v1/projects") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "RateLimit" not in answers[2].headers
    result = app.test_cli_runner().invoke(args=["ratelimit", "show", "address:127.0.0.1"])
    assert result.exit_code == 1 and "rate limits are off" in result.output


def test_cli_show_and_reset(limited):
    app = limited(RATELIMIT_DEFAULT="3/minute", RATELIMIT_ANONYMOUS="5/minute")
    user = make_user(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {make_token(app, user)}"}
    for _ in range(4):
        client.get("/api/v1/projects", headers=headers)
    client.get("/api/v1/projects")
    runner = app.test_cli_runner()

    def show(key):
        shown = runner.invoke(args=["ratelimit", "show", key])
        assert shown.exit_code == 0, shown.output
        lines = [line for line in shown.output.splitlines() if not line.startswith("note:")]
        assert lines[0] == key and lines[1].split() == [
            "POLICY",
            "LIMIT",
            "USED",
            "REMAINING",
            "RESET",
        ]
        return {line.split()[0]: line.split()[1:] for line in lines[2:]}

    rows = show(f"user:{user.id}")
    assert rows["default"][:3] == ["3/60s", "4", "0"]  # 4 sent, 1 refused
    assert 0 < int(rows["default"][3].rstrip("s")) <= 60
    assert rows["create_project"] == ["30/60s", "0", "30", "-"]
    assert show("address:127.0.0.1")["anonymous"][:3] == ["5/60s", "1", "4"]

    reset = runner.invoke(args=["ratelimit", "reset", f"user:{user.id}"])
    assert reset.exit_code == 0, reset.output
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    assert show(f"user:{user.id}")["default"][:3] == ["3/60s", "1", "2"]
    with app.app_context():
        rows = mars_db.session.scalars(
            sa.select(AuditRecord).where(AuditRecord.action == "ratelimit.reset")
        ).all()
        # every policy the user has: the default and each operation's own (the installed
        # plugins' too)
        assert [r.target for r in rows] == [f"user:{user.id}"]
        assert {"default", "create_project"} <= set(rows[0].details["policies"])
        assert rows[0].actor_id.startswith("cli:")

    bad = runner.invoke(args=["ratelimit", "reset", "address:not-an-ip"])
    assert bad.exit_code == 2 and "is not user:<id>" in bad.output
    ipv6 = runner.invoke(args=["ratelimit", "show", "address:2001:db8::5"])
    assert "address:2001:db8::/64" in ipv6.output.splitlines()


def test_redis_down_fails_open(make_app, caplog, monkeypatch):
    monkeypatch.setattr(rl, "OUTAGE_BACKOFF_SECONDS", 60.0)  # longer than any stall here
    app = make_app(REDIS_URL=CLOSED_REDIS, RATELIMIT_ANONYMOUS="1/minute")
    client = app.test_client()
    errors = rl.storage_errors._value.get()
    with caplog.at_level(logging.WARNING, logger=rl.__name__):
        answers = [client.get("/api/v1/projects") for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5  # served, unlimited
        assert all("RateLimit" not in a.headers for a in answers)
        # One failed call; the back-off spares the next requests (and their time).
        assert rl.storage_errors._value.get() == errors + 1
        limiter = rl.limiter_of(app)
        assert limiter is not None and limiter._down_until > time.monotonic() + 30
        limiter._down_until = time.monotonic()  # the back-off has run out
        assert client.get("/api/v1/projects").status_code == 200
        assert rl.storage_errors._value.get() == errors + 2
    outage_logs = [r for r in caplog.records if "rate limits are off" in r.getMessage()]
    assert len(outage_logs) == 1  # once per outage, not per request


def test_redis_answers_in_one_round_trip(make_app, redis_url, project_body):
    """Every policy of a request is counted by one script call."""
    import redis

    app = make_app(REDIS_URL=redis_url)
    client = signed_in_client(app)
    monitor = redis.Redis.from_url(redis_url)
    before = monitor.info("commandstats")
    assert client.post("/api/v1/projects", json=project_body()).status_code == 201
    after = monitor.info("commandstats")
    monitor.close()

    def calls(stats, name):
        return stats.get(f"cmdstat_{name}", {}).get("calls", 0)

    scripts = sum(calls(after, c) - calls(before, c) for c in ("evalsha", "eval"))
    assert scripts == 1


def script_calls(redis_url: str) -> int:
    import redis

    server = redis.Redis.from_url(redis_url)
    stats = server.info("commandstats")
    server.close()
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def test_a_large_quota_is_counted_in_leases(make_app, redis_url):
    """A process takes 1% of a quota at a time: 30 requests of a 1000/minute caller cost
    three round trips, and the caller still sees every request counted."""
    assert rl.lease_size(1000, 1) == 10 and rl.lease_size(199, 1) == 1
    app = make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="1000/minute")
    client = app.test_client()
    before = script_calls(redis_url)
    answers = [client.get("/api/v1/projects") for _ in range(30)]
    assert script_calls(redis_url) - before == 3
    assert [remaining(a)["anonymous"] for a in answers] == list(range(999, 969, -1))
    assert all(0 < strict_fields(a)[0][2]["t"] <= 60 for a in answers)


def test_leases_never_give_more_than_the_quota(make_app, redis_url):
    """Two processes (two apps) share a caller's 400/minute: together they serve exactly the
    quota, one in four requests on the first, the rest on the second, never a request more."""
    first, second = (make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="400/minute") for _ in "ab")
    clients = [first.test_client(), second.test_client()]
    statuses = [clients[n % 4 == 0].get("/api/v1/projects").status_code for n in range(600)]
    assert statuses.count(200) == 400
    assert set(statuses) == {200, 429}


def test_threads_of_one_process_lose_no_lease(make_app, redis_url):
    """Threads that take leases for one caller at once keep all of them: four threads
    serve the whole quota, not a request more or less."""
    app = make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="1000/minute")
    served = []

    def send() -> None:
        client = app.test_client()
        statuses = [client.get("/api/v1/projects").status_code for _ in range(300)]
        served.append(statuses.count(200))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(served) == 1000


def test_a_lease_left_in_an_idle_process_is_all_a_caller_loses(make_app, redis_url):
    first, second = (make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="400/minute") for _ in "ab")
    assert first.test_client().get("/api/v1/projects").status_code == 200  # takes a lease of 4
    client = second.test_client()
    served = sum(client.get("/api/v1/projects").status_code == 200 for _ in range(450))
    assert served == 400 - rl.lease_size(400, 1)  # the 3 left in the first process, and its 1


def test_lease_percent_zero_counts_every_request_in_redis(make_app, redis_url):
    app = make_app(
        REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="1000/minute", RATELIMIT_LEASE_PERCENT="0"
    )
    client = app.test_client()
    before = script_calls(redis_url)
    for _ in range(5):
        client.get("/api/v1/projects")
    assert script_calls(redis_url) - before == 5


def test_leases_stay_with_their_process(make_app, redis_url, monkeypatch):
    """A forked process starts without its parent's leases (they would be served twice), and
    ``reset`` drops this process's leases with the counters."""
    app = make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="1000/minute")
    client = app.test_client()
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 999}
    before = script_calls(redis_url)
    parent = rl.os.getpid()
    monkeypatch.setattr(rl.os, "getpid", lambda: parent + 1)
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 989}  # a lease of its own
    assert script_calls(redis_url) - before == 1
    rl.limiter_of(app).reset("address:127.0.0.1")
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 999}


def test_a_flushed_script_or_a_dropped_connection_costs_no_request(make_app, redis_url):
    """The limiter keeps a connection per thread: a Redis that forgot the script (a restart,
    SCRIPT FLUSH) has it loaded again, and a connection Redis dropped since its last use is
    made anew at once: the request is counted, not served unlimited."""
    import redis

    app = make_app(REDIS_URL=redis_url, RATELIMIT_ANONYMOUS="100/minute")
    client = app.test_client()
    server = redis.Redis.from_url(redis_url)
    errors = rl.storage_errors._value.get()
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 99}
    server.script_flush()
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 98}
    server.client_kill_filter(_type="normal", skipme=True)
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 97}
    server.client_kill_filter(_type="normal", skipme=True)
    server.script_flush()
    assert remaining(client.get("/api/v1/projects")) == {"anonymous": 96}
    assert rl.storage_errors._value.get() == errors
    server.close()


def test_rejections_are_counted(make_app):
    app = make_app(RATELIMIT_ANONYMOUS="1/minute")
    counted = rl.rejections.labels(policy="anonymous")
    before = counted._value.get()
    client = app.test_client()
    for _ in range(3):
        client.get("/api/v1/projects")
    assert counted._value.get() == before + 2
