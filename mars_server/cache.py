"""A cache for the core and for plugins: ``cache.namespace("projects").get(key)``.

Each plugin keeps its entries in a namespace of its own (its name), with a time to live per
entry. Values are JSON (written by orjson, never pickled): ``dict``, ``list``, ``str``,
``int``, ``float``, ``bool`` and ``None`` come back as they went in; what else orjson can
write (a datetime, a UUID, a dataclass) comes back in its JSON form (a string, a dict).

Where the entries live:

- ``MARS_REDIS_URL`` set: in Redis, shared by every instance and worker. Redis failing never
  fails a request: a read that cannot reach it is a miss, a write is dropped, both are logged
  (once a minute at most) and counted (``mars_cache_requests_total{result="error"}``,
  ``mars_cache_errors_total``). Timeouts are short and, after a connection error, Redis is
  left alone for a second, so an outage does not add a timeout to every request.
- unset: in each process's memory (a bounded LRU whose entries expire), which suits one
  process only: what one process stores or deletes, another does not see.

The cache is bound to the app (``create_app`` makes it); :func:`namespace` finds the
current app's::

    from mars_server import cache

    projects = cache.namespace("projects")
    stats = projects.get(f"stats:{project_id}")
    if stats is None:
        stats = compute_stats(project_id)
        projects.set(f"stats:{project_id}", stats, ttl=300)

A cache is for what can be computed again: an entry may disappear at any time.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import redis
from cachetools import TLRUCache
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from mars_server import metrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flask import Flask

__all__ = ["Cache", "Namespace", "get_cache", "init_app", "namespace"]

log = logging.getLogger(__name__)

#: what names a namespace: a plugin's name, or ``<plugin>.<part>``.
NAMESPACE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_KEY_LENGTH = 512
#: every Redis key MARS's cache writes starts with it (other MARS data shares the server).
REDIS_PREFIX = "mars:cache:"
#: seconds: Redis on the local network answers in well under a millisecond.
REDIS_SOCKET_TIMEOUT = 0.25
#: after a connection error or a timeout, Redis is not asked again for this long (seconds).
REDIS_BACKOFF_SECONDS = 1.0
#: entries an in-process cache keeps at most (least recently used go first).
MEMORY_MAX_ENTRIES = 10_000
#: a backend failure is logged at most this often (seconds); the metric counts every one.
LOG_INTERVAL_SECONDS = 60.0
EXTENSION = "mars.cache"

_requests = metrics.counter(
    "mars_cache_requests_total",
    "Cache reads by namespace and result: hit, miss, or error (the backend did not answer; "
    "the read was a miss).",
    ["namespace", "result"],
)
_errors = metrics.counter(
    "mars_cache_errors_total",
    "Cache operations the backend failed, by namespace and operation (get, set, delete, incr).",
    ["namespace", "operation"],
)


class CacheUnavailable(Exception):
    """The backend did not answer (raised inside this module only)."""


class _Backend(Protocol):
    """Where the bytes live. Keys arrive whole (namespace included); methods raise
    :class:`CacheUnavailable` when the store cannot be reached."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set(self, key: str, value: bytes, ttl: float | None, *, only_if_absent: bool) -> bool: ...

    def delete(self, keys: Sequence[str]) -> int: ...

    def incr(self, key: str, amount: int, ttl: float | None) -> int: ...


class MemoryBackend:
    """Entries in this process's memory: cachetools' time-aware LRU, behind a lock."""

    def __init__(self, maxsize: int = MEMORY_MAX_ENTRIES) -> None:
        # Entries are (expires at, bytes); wall-clock time, so tests can move it.
        self._entries: TLRUCache[str, tuple[float, bytes]] = TLRUCache(
            maxsize, ttu=lambda _key, value, _now: value[0], timer=lambda: time.time()
        )
        self._lock = threading.Lock()

    @staticmethod
    def _expiry(ttl: float | None) -> float:
        return math.inf if ttl is None else time.time() + ttl

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            found = [self._entries.get(key) for key in keys]
        return [None if entry is None else entry[1] for entry in found]

    def set(self, key: str, value: bytes, ttl: float | None, *, only_if_absent: bool) -> bool:
        with self._lock:
            if only_if_absent and key in self._entries:
                return False
            self._entries[key] = (self._expiry(ttl), value)
            return True

    def delete(self, keys: Sequence[str]) -> int:
        with self._lock:
            return sum(self._entries.pop(key, None) is not None for key in keys)

    def incr(self, key: str, amount: int, ttl: float | None) -> int:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                expires, number = self._expiry(ttl), 0
            else:
                expires, number = entry[0], orjson.loads(entry[1])
                if not isinstance(number, int) or isinstance(number, bool):
                    raise TypeError("incr of a value that is not an integer")
            number += amount
            self._entries[key] = (expires, str(number).encode())
            return number


class RedisBackend:
    """Entries in Redis: one round trip per call, short timeouts, a back-off after a failure."""

    def __init__(self, url: str, *, backoff: float = REDIS_BACKOFF_SECONDS) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
            # No retries inside redis-py: each would add a timeout to the request.
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=30,
        )
        self.backoff = backoff
        self._down_until = 0.0

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheUnavailable("Redis is backing off after an error")
        try:
            result = operation(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._down_until = time.monotonic() + self.backoff
            raise CacheUnavailable(f"Redis did not answer: {exc}") from exc
        except redis.RedisError as exc:  # an answer, but an error one (OOM, read-only replica)
            raise CacheUnavailable(f"Redis refused: {exc}") from exc
        self._down_until = 0.0
        return result

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(self._call(self.client.mget, keys))

    def set(self, key: str, value: bytes, ttl: float | None, *, only_if_absent: bool) -> bool:
        px = None if ttl is None else max(1, int(ttl * 1000))
        return bool(self._call(self.client.set, key, value, px=px, nx=only_if_absent))

    def delete(self, keys: Sequence[str]) -> int:
        return int(self._call(self.client.delete, *keys))

    def incr(self, key: str, amount: int, ttl: float | None) -> int:
        def run() -> int:
            with self.client.pipeline(transaction=True) as pipe:
                if ttl is not None:  # the expiry starts with the first increment
                    pipe.set(key, 0, px=max(1, int(ttl * 1000)), nx=True)
                pipe.incrby(key, amount)
                return int(pipe.execute()[-1])

        return int(self._call(run))


class _Reporter:
    """Logs backend failures without flooding the log: the first, then one a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -math.inf
        self._suppressed = 0

    def report(self, namespace: str, operation: str, exc: Exception) -> None:
        _errors.labels(namespace, operation).inc()
        now = time.monotonic()
        with self._lock:
            if now - self._last < LOG_INTERVAL_SECONDS:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        log.warning(
            "cache unavailable (%s): reads are misses and writes are dropped "
            "(%d more failures since the last report)",
            exc,
            suppressed,
        )


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise TypeError(f"a cached value must be JSON: {exc}") from None


class Namespace:
    """One plugin's part of the cache. Keys are strings; ``ttl`` is in seconds (``None``:
    no expiry, the entry stays until evicted or deleted)."""

    def __init__(self, cache: Cache, name: str) -> None:
        self.cache = cache
        self.name = name
        self._prefix = f"{cache.prefix}{name}:"
        self._hit = _requests.labels(name, "hit")
        self._miss = _requests.labels(name, "miss")
        self._error = _requests.labels(name, "error")
        self._results = {"hit": self._hit, "miss": self._miss, "error": self._error}

    def __repr__(self) -> str:
        return f"<cache namespace {self.name!r}>"

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"a cache key is a string of 1 to {MAX_KEY_LENGTH} characters")
        return self._prefix + key

    def key(self, key: str) -> str:
        """``key`` as the backend stores it (in Redis: with the prefix and the namespace)."""
        return self._key(key)

    def _failed(self, operation: str, exc: Exception) -> None:
        self.cache._reporter.report(self.name, operation, exc)

    def read(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The raw entries of ``keys``, in one round trip, not counted; ``None`` when the
        backend failed (logged and counted as an error of the operation ``get``). For code
        that counts its own hits and misses (:meth:`count`)."""
        try:
            return self.cache.backend.get_many([self._key(key) for key in keys])
        except CacheUnavailable as exc:
            self._failed("get", exc)
            return None

    def count(self, result: str) -> None:
        """Count one read as ``hit``, ``miss`` or ``error``."""
        self._results[result].inc()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default`` (missing, expired, or unreachable)."""
        return self.get_many(key, default=default)[0]

    def get_many(self, *keys: str, default: Any = None) -> list[Any]:
        """The values of ``keys`` in order, fetched in one round trip; ``default`` for each
        key without one."""
        found = self.read(keys)
        if found is None:
            self._error.inc(len(keys))
            return [default] * len(keys)
        values = []
        for raw in found:
            if raw is None:
                self._miss.inc()
                values.append(default)
            else:
                self._hit.inc()
                values.append(orjson.loads(raw))
        return values

    def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` (JSON, else :class:`TypeError`); ``False`` when it could not be."""
        return self._write(key, value, ttl, only_if_absent=False)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` unless ``key`` holds one already; ``True`` when this call stored it."""
        return self._write(key, value, ttl, only_if_absent=True)

    def _write(self, key: str, value: Any, ttl: float | None, *, only_if_absent: bool) -> bool:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive (or None: no expiry)")
        payload = _dumps(value)
        try:
            return self.cache.backend.set(
                self._key(key), payload, ttl, only_if_absent=only_if_absent
            )
        except CacheUnavailable as exc:
            self._failed("set", exc)
            return False

    def set_many(self, values: Mapping[str, Any], ttl: float | None = None) -> bool:
        """Store every item of ``values``; ``False`` when one could not be."""
        return all([self.set(key, value, ttl) for key, value in values.items()])

    def delete(self, *keys: str) -> bool:
        """Forget ``keys``; ``False`` when the backend could not be reached (the entries may
        then live until they expire)."""
        if not keys:
            return True
        try:
            self.cache.backend.delete([self._key(key) for key in keys])
        except CacheUnavailable as exc:
            self._failed("delete", exc)
            return False
        return True

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int | None:
        """Add ``amount`` to the integer at ``key`` (missing: 0) and return the sum; ``ttl``
        applies when this call creates the entry. ``None`` when the backend failed."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive (or None: no expiry)")
        try:
            return self.cache.backend.incr(self._key(key), amount, ttl)
        except CacheUnavailable as exc:
            self._failed("incr", exc)
            return None


class Cache:
    """An app's cache: a backend and its namespaces."""

    def __init__(self, backend: _Backend, *, prefix: str | None = None) -> None:
        self.backend = backend
        self.prefix = REDIS_PREFIX if prefix is None else prefix
        self._namespaces: dict[str, Namespace] = {}
        self._reporter = _Reporter()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Cache:
        url = settings.get("REDIS_URL")
        return cls(RedisBackend(url) if url else MemoryBackend())

    @property
    def shared(self) -> bool:
        """Whether every process of the deployment sees the same entries (Redis)."""
        return isinstance(self.backend, RedisBackend)

    def namespace(self, name: str) -> Namespace:
        """The namespace ``name`` (a plugin's name; lower case, digits, ``_ . -``)."""
        found = self._namespaces.get(name)
        if found is None:
            if not NAMESPACE_NAME.match(name):
                raise ValueError(f"cache namespace {name!r} must match {NAMESPACE_NAME.pattern}")
            found = self._namespaces.setdefault(name, Namespace(self, name))
        return found


def init_app(app: Flask) -> Cache:
    """Give ``app`` its cache, from its settings (``create_app`` calls this)."""
    cache = Cache.from_settings(app.config["MARS"])
    app.extensions[EXTENSION] = cache
    return cache


def get_cache(app: Flask | None = None) -> Cache:
    """The cache of ``app`` (by default, the current app)."""
    return (app or current_app).extensions[EXTENSION]


def namespace(name: str) -> Namespace:
    """The namespace ``name`` of the current app's cache."""
    return get_cache().namespace(name)
