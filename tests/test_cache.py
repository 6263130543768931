"""The shared cache (mars_server.cache): its API on both backends, namespaces, expiry,
JSON-only values, and Redis failing without failing a request."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time

import prometheus_client
import pytest
import redis
import time_machine

from mars_server import cache
from mars_server.cache import REDIS_SOCKET_TIMEOUT, Cache, MemoryBackend, RedisBackend

#: nothing listens there: connections are refused at once.
DOWN = "redis://127.0.0.1:1/0"


def stored_key(key: str) -> str:
    """``key`` as the cache stores it in Redis (the prefix is per pytest-xdist worker)."""
    import mars_server.cache

    return mars_server.cache.REDIS_PREFIX + key


def requests_counted(namespace, result):
    value = prometheus_client.REGISTRY.get_sample_value(
        "mars_cache_requests_total", {"namespace": namespace, "result": result}
    )
    return value or 0.0


def errors_counted(namespace, operation):
    value = prometheus_client.REGISTRY.get_sample_value(
        "mars_cache_errors_total", {"namespace": namespace, "operation": operation}
    )
    return value or 0.0


@pytest.fixture(params=["memory", "redis"])
def shared(request):
    """A cache on each backend (Redis: the test database, emptied)."""
    if request.param == "memory":
        return Cache(MemoryBackend())
    return Cache(RedisBackend(request.getfixturevalue("redis_url")))


def test_set_get_delete(shared):
    things = shared.namespace("things")
    assert things.get("a") is None
    assert things.get("a", default="none") == "none"
    assert things.set("a", {"n": 1, "tags": ["x", "y"], "ok": True, "none": None}, ttl=60)
    assert things.get("a") == {"n": 1, "tags": ["x", "y"], "ok": True, "none": None}
    assert things.set_many({"b": 2, "c": "three"}, ttl=60)
    assert things.get_many("c", "missing", "b", "a") == ["three", None, 2, things.get("a")]
    assert things.delete("a", "b")
    assert things.get_many("a", "b", "c") == [None, None, "three"]
    assert things.delete()  # nothing to delete is no error


def test_add_and_incr(shared):
    counters = shared.namespace("counters")
    assert counters.add("once", "first", ttl=60)
    assert not counters.add("once", "second", ttl=60)
    assert counters.get("once") == "first"
    assert counters.incr("hits", ttl=60) == 1
    assert counters.incr("hits", 5) == 6
    assert counters.get("hits") == 6


def test_namespaces_keep_apart(shared):
    shared.namespace("projects").set("key", "projects'")
    shared.namespace("webhooks").set("key", "webhooks'")
    assert shared.namespace("projects").get("key") == "projects'"
    shared.namespace("webhooks").delete("key")
    assert shared.namespace("projects").get("key") == "projects'"
    assert shared.namespace("projects") is shared.namespace("projects")


@pytest.mark.parametrize("name", ["", "Projects", "a b", "x" * 65, "1st"])
def test_namespace_names_are_checked(name):
    with pytest.raises(ValueError, match="namespace"):
        Cache(MemoryBackend()).namespace(name)


def test_keys_and_ttls_are_checked(shared):
    things = shared.namespace("things")
    for key in ("", "k" * 513, 42):
        with pytest.raises(ValueError, match="key"):
            things.get(key)
    with pytest.raises(ValueError, match="ttl"):
        things.set("k", 1, ttl=0)


def test_values_are_json_never_pickled(shared, request):
    things = shared.namespace("things")
    with pytest.raises(TypeError, match="JSON"):
        things.set("k", object())
    with pytest.raises(TypeError, match="JSON"):
        things.set("k", {1, 2})
    things.set("k", (1, "two"))
    assert things.get("k") == [1, "two"]  # JSON's array
    things.set("when", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert things.get("when") == "2026-01-02T03:04:05+00:00"
    if isinstance(shared.backend, RedisBackend):
        raw = shared.backend.client.get(stored_key("things:k"))
        assert raw == b'[1,"two"]'


def test_entries_expire_in_memory():
    things = Cache(MemoryBackend()).namespace("things")
    with time_machine.travel(dt.datetime(2026, 3, 1, tzinfo=dt.UTC), tick=False) as clock:
        things.set("short", 1, ttl=10)
        things.set("forever", 2)
        things.incr("counter", ttl=10)
        clock.shift(9)
        assert things.get_many("short", "forever", "counter") == [1, 2, 1]
        clock.shift(2)
        assert things.get_many("short", "forever", "counter") == [None, 2, None]


def test_entries_expire_in_redis(redis_url):
    shared = Cache(RedisBackend(redis_url))
    things = shared.namespace("things")
    things.set("short", 1, ttl=1)
    things.incr("counter", ttl=1)
    client = shared.backend.client
    assert 0 < client.pttl(stored_key("things:short")) <= 1000
    assert 0 < client.pttl(stored_key("things:counter")) <= 1000
    things.set("forever", 2)
    assert client.pttl(stored_key("things:forever")) == -1
    # Rather than wait a second: the entries' last milliseconds.
    client.pexpire(stored_key("things:short"), 1)
    client.pexpire(stored_key("things:counter"), 1)
    time.sleep(0.01)
    assert things.get_many("short", "counter", "forever") == [None, None, 2]


def test_hits_and_misses_are_counted(shared):
    things = shared.namespace("counted")
    hits, misses = requests_counted("counted", "hit"), requests_counted("counted", "miss")
    things.set("a", 1)
    things.get_many("a", "b")
    things.get("a")
    assert requests_counted("counted", "hit") == hits + 2
    assert requests_counted("counted", "miss") == misses + 1


def test_redis_down_is_a_miss_logged_once_and_counted(caplog):
    unreachable = Cache(RedisBackend(DOWN, backoff=60))
    things = unreachable.namespace("down")
    errors = requests_counted("down", "error")
    failed_sets = errors_counted("down", "set")
    with caplog.at_level(logging.WARNING, logger="mars_server.cache"):
        assert things.get("k", default="fallback") == "fallback"
        assert things.get_many("a", "b") == [None, None]
        assert things.set("k", 1) is False
        assert things.add("k", 1) is False
        assert things.delete("k") is False
        assert things.incr("k") is None
    assert requests_counted("down", "error") == errors + 3
    assert errors_counted("down", "set") == failed_sets + 2
    warnings = [r for r in caplog.records if r.name == "mars_server.cache"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cache unavailable" in warnings[0].getMessage()


def test_redis_is_left_alone_for_a_moment_after_an_error():
    backend = RedisBackend(DOWN, backoff=60)
    things = Cache(backend).namespace("down")
    calls = []
    real = backend.client.mget

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    backend.client.mget = counting
    for _ in range(5):
        assert things.get("k") is None
    assert len(calls) == 1  # the others did not try: no timeout added to each request


def test_a_redis_that_does_not_answer_costs_one_short_timeout():
    # A socket that takes connections (the kernel's backlog) but never answers: a hung Redis.
    with socket.create_server(("127.0.0.1", 0)) as hung:
        port = hung.getsockname()[1]
        things = Cache(RedisBackend(f"redis://127.0.0.1:{port}/0", backoff=60)).namespace("hung")
        started = time.monotonic()
        assert things.get("k") is None
        first = time.monotonic() - started
        assert REDIS_SOCKET_TIMEOUT <= first < REDIS_SOCKET_TIMEOUT + 0.3
        started = time.monotonic()
        for _ in range(10):
            assert things.get("k") is None
            assert things.set("k", 1) is False
        assert time.monotonic() - started < 0.05  # backing off: no more timeouts


def test_the_app_has_a_cache_that_plugins_reach(app):
    assert cache.get_cache(app) is app.extensions["mars.cache"]
    assert isinstance(cache.get_cache().backend, MemoryBackend)
    cache.namespace("projects").set("k", "v")
    assert cache.get_cache(app).namespace("projects").get("k") == "v"


def test_the_cache_is_redis_when_configured(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url, RATELIMIT_ENABLED=False)
    with app.app_context():
        assert cache.get_cache().shared
        cache.namespace("projects").set("k", "v")
    assert redis.Redis.from_url(redis_url).get(stored_key("projects:k")) == b'"v"'


def test_requests_are_served_while_redis_is_down(make_app, create_user, token_for):
    app = make_app(REDIS_URL=DOWN, RATELIMIT_ENABLED=False)
    user = create_user()
    token = token_for(user, ["account:read"])
    client = app.test_client()
    errors = requests_counted("auth", "error")
    for _ in range(3):
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.json
    assert requests_counted("auth", "error") == errors + 3
