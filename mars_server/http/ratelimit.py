"""Rate limits on every API operation, with the IETF ``RateLimit`` header fields.

Every request under ``/api/v1/`` (but the OpenAPI document and CORS preflights) counts
against its caller: ``user:<id>`` for a user, through a personal access token or any OAuth
app (one person's allowance does not grow with the apps they use), ``client:<client_id>``
for an app acting for itself, else ``address:<ip>`` (an IPv6 address by its /64), which is
also what a request with invalid credentials counts against. Authenticated callers get the
``default`` policy (``MARS_RATELIMIT_DEFAULT``), addresses the ``anonymous`` one
(``MARS_RATELIMIT_ANONYMOUS``). An operation may add a policy of its own
(:meth:`mars_server.http.Blueprint.rate_limit`), counted on top of the default one: a
request passes only while every policy it counts against has room.

Windows are fixed and start at a caller's first request (as in ``limits``' fixed window);
every answer says where the caller stands (draft-ietf-httpapi-ratelimit-headers)::

    RateLimit-Policy: "default";q=600;w=60
    RateLimit: "default";r=599;t=60

A request over a limit is refused with 429 (problem+json, ``Retry-After``) before its
Idempotency-Key is claimed and before the view runs, so it does nothing. It still counts.

Why ``limits`` and not Flask-Limiter: Flask-Limiter writes neither these header fields nor
problem documents, and its own request hooks and key functions would sit beside MARS's
(the order against the idempotency claim matters). From ``limits`` MARS takes the rate
syntax (``600/minute``) and the storages (in memory; Redis when ``MARS_REDIS_URL`` is set,
so that limits hold across instances). Its fixed-window strategy needs two round trips to
Redis to answer both "how many left" and "until when"; MARS counts every policy of a
request and reads their expiry in one Lua script: one round trip at most per request.

In Redis, a large quota is counted in leases. When a process asks Redis for a caller's
request, it takes up to ``MARS_RATELIMIT_LEASE_PERCENT`` per cent of the quota at once
(never more than an eighth of what the window has left) and serves the caller's next
requests from it without a round trip. Redis never hands out more than the quota in a
window, so no caller ever gets more than its quota across all instances. What a lease
costs: a caller may be refused on one process while another still holds a few of its
requests (at most a lease per process), and the ``RateLimit`` field an instance sends does
not count what other processes served from their leases since. A quota under
``200 / MARS_RATELIMIT_LEASE_PERCENT`` per window (and every quota, with the setting at 0)
is counted exactly, one round trip per request.

Redis down: MARS fails open. Requests are served, without limits or RateLimit fields, for
:data:`OUTAGE_BACKOFF_SECONDS` before Redis is tried again (a request never waits on a
dead server more than once per back-off); the outage is logged once, when it starts and
when it ends, and each failed call is counted in ``mars_ratelimit_storage_errors_total``.
Sign-in and client-authentication throttles live in the database and hold regardless.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import limits
from flask import current_app, g, request
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from mars_server import metrics
from mars_server.crypto import keyed_digest
from mars_server.http.addresses import address_key
from mars_server.http.problems import PROBLEM_TYPE_PREFIX, MarsError
from mars_server.http.security import current_actor
from mars_server.http.spec import API_PREFIX, is_api_path

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flask import Flask, Response

log = logging.getLogger(__name__)

DEFAULT_POLICY = "default"
ANONYMOUS_POLICY = "anonymous"
#: What the OpenAPI document is served at: fetched by tools, not limited.
OPENAPI_PATH = API_PREFIX + "/openapi.json"
#: How long requests go unlimited after Redis failed, before it is tried again.
OUTAGE_BACKOFF_SECONDS = 5.0
#: Connect and read timeouts of the Redis connection: a dead server costs a request this much.
STORAGE_TIMEOUT_SECONDS = 0.2
KEY_PREFIX = "mars:ratelimit"
#: The attribute :meth:`Blueprint.rate_limit` sets on a view function.
OPERATION_LIMIT_ATTR = "_mars_rate_limit"
DIGEST_CACHE_SIZE = 10_000
#: A lease is at most ``MARS_RATELIMIT_LEASE_PERCENT`` of a policy's quota (see the module's
#: docstring), and at most 1/LEASE_SHARE of what the window has left, so that the last requests of a
#: window are handed out one by one.
LEASE_SHARE = 8
#: The callers whose leases a process keeps at most; beyond, the spent ones are dropped.
LEASES_KEPT = 10_000
_POLICY_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

rejections = metrics.counter(
    "mars_ratelimit_rejections_total",
    "Requests refused with 429 by a rate-limit policy.",
    ["policy"],
)
storage_errors = metrics.counter(
    "mars_ratelimit_storage_errors_total",
    "Calls to the rate-limit storage (Redis) that failed; requests were then served unlimited.",
)


class RateLimited(MarsError):
    """429: a policy's quota is used up; ``Retry-After`` says when to try again."""

    status = 429
    type_ = PROBLEM_TYPE_PREFIX + "rate-limited"
    title = "Too many requests."

    def __init__(self, retry_after: int, violated: Sequence[str]) -> None:
        names = ", ".join(violated)
        super().__init__(
            f"You have used up the rate limit ({names}). Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )
        self.extra["violated-policies"] = list(violated)  # the draft's problem member


def parse_rate(text: str) -> tuple[int, int]:
    """``(quota, window in seconds)`` of a rate such as ``600/minute`` or ``10 per 5 seconds``.

    :raises ValueError: ``text`` is not exactly one rate.
    """
    try:
        items = limits.parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(
            f"{text!r} is not a rate: write N/second, N/minute, N/hour or N/day "
            "(e.g. 600/minute), one rate only"
        )
    return items[0].amount, items[0].get_expiry()


@dataclass(frozen=True)
class Policy:
    """At most ``quota`` requests in ``window`` seconds, per caller."""

    name: str
    quota: int
    window: int

    @classmethod
    def of(cls, name: str, rate: str) -> Policy:
        if not _POLICY_NAME.match(name):
            raise ValueError(f"rate-limit policy name {name!r}: letters, digits, _ . : - only")
        return cls(name, *parse_rate(rate))

    @property
    def field(self) -> str:
        """The policy as an item of ``RateLimit-Policy``."""
        return f'"{self.name}";q={self.quota};w={self.window}'


@dataclass(frozen=True)
class OperationLimit:
    """What :meth:`Blueprint.rate_limit` put on a view: its rate and, maybe, a policy name."""

    rate: str
    name: str | None = None


@dataclass(frozen=True)
class Usage:
    """Where a caller stands in a policy: ``used`` so far, ``reset`` seconds to a new window."""

    policy: Policy
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.policy.quota - self.used)

    @property
    def exhausted(self) -> bool:
        return self.used > self.policy.quota

    @property
    def field(self) -> str:
        """The usage as an item of ``RateLimit``."""
        return f'"{self.policy.name}";r={self.remaining};t={self.reset}'


class Counters(Protocol):
    """Fixed-window counters: count a hit, peek, clear."""

    def hit(
        self, keys: Sequence[str], windows: Sequence[int], quotas: Sequence[int]
    ) -> list[tuple[int, float]]:
        """Count one under each key; ``(count, seconds to the window's end)`` of each (a
        count over its quota: refused)."""

    def peek(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        """``(count, seconds to the window's end)`` of each key, counting nothing."""

    def clear(self, keys: Sequence[str]) -> None: ...


class MemoryCounters:
    """In this process's memory (``limits``' MemoryStorage): one process only."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self.storage = MemoryStorage()

    def hit(
        self, keys: Sequence[str], windows: Sequence[int], quotas: Sequence[int]
    ) -> list[tuple[int, float]]:
        counts = [self.storage.incr(key, window) for key, window in zip(keys, windows, strict=True)]
        now = time.time()
        return [
            (count, self.storage.get_expiry(key) - now)
            for count, key in zip(counts, keys, strict=True)
        ]

    def peek(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        now = time.time()
        return [(self.storage.get(key), self.storage.get_expiry(key) - now) for key in keys]

    def clear(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.storage.clear(key)


#: Take a lease under each key: count ``taken`` (1, or up to the lease's size while the
#: window has room), start the window (expiry) on the first, and say how long the window has
#: left and what was taken: one round trip for every policy of a request. ARGV holds each
#: key's window, quota and lease size, then LEASE_SHARE.
_HIT_SCRIPT = """
local share = tonumber(ARGV[#ARGV])
local result = {}
for i, key in ipairs(KEYS) do
    local quota = tonumber(ARGV[3 * i - 1])
    local lease = tonumber(ARGV[3 * i])
    local taken = 1
    if lease > 1 then
        local room = quota - tonumber(redis.call('GET', key) or '0')
        taken = math.max(1, math.min(lease, math.floor(room / share)))
    end
    local count = redis.call('INCRBY', key, taken)
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
        ttl = tonumber(ARGV[3 * i - 2]) * 1000
        redis.call('PEXPIRE', key, ttl)
    end
    result[3 * i - 2] = count
    result[3 * i - 1] = ttl
    result[3 * i] = taken
end
return result
"""


@dataclass
class _Lease:
    """Requests of one caller and policy this process took from Redis and has not served."""

    left: int
    #: The window's count in Redis right after the lease was taken (the lease included).
    count: int
    #: When the window ends (``time.monotonic()``); the lease dies with it.
    ends: float


def lease_size(quota: int, percent: int) -> int:
    """How many requests a process takes from Redis at once, at most, for ``quota``."""
    return max(1, quota * percent // 100)


class RedisCounters:
    """In Redis (``limits``' RedisStorage and its connection), shared by every instance."""

    def __init__(self, url: str, lease_percent: int) -> None:
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.retry import Retry

        self.errors: tuple[type[Exception], ...] = (RedisError, OSError)
        options: dict[str, Any] = {
            "key_prefix": KEY_PREFIX,
            "socket_timeout": STORAGE_TIMEOUT_SECONDS,
            "socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
            # A failed call is not retried: the next request is served unlimited instead.
            "retry": Retry(NoBackoff(), 0),
        }
        storage = storage_from_string(url, **options)
        assert isinstance(storage, RedisStorage)
        # redis-py's client (limits types it as a protocol of its own).
        self.redis: Any = cast("Any", storage.get_connection())
        self.script = self.redis.register_script(_HIT_SCRIPT)
        self._pool = self.redis.connection_pool
        self._mine = threading.local()
        self.lease_percent = lease_percent
        self._leases: dict[str, _Lease] = {}
        self._leases_pid = os.getpid()
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        """This thread's own connection for :meth:`hit` (made on first use, and again in a
        forked process)."""
        mine = self._mine
        if getattr(mine, "pid", None) != os.getpid():
            mine.conn, mine.pid = self._pool.make_connection(), os.getpid()
        return mine.conn

    def hit(
        self, keys: Sequence[str], windows: Sequence[int], quotas: Sequence[int]
    ) -> list[tuple[int, float]]:
        now = time.monotonic()
        results: list[tuple[int, float]] = []
        missing: list[int] = []
        with self._lock:
            if self._leases_pid != os.getpid():  # a forked process: the leases are its parent's
                self._leases, self._leases_pid = {}, os.getpid()
            for i, key in enumerate(keys):
                lease = self._leases.get(key)
                if lease is not None and lease.left and now < lease.ends:
                    lease.left -= 1
                    results.append((lease.count - lease.left, lease.ends - now))
                else:
                    results.append((0, 0.0))
                    missing.append(i)
        if not missing:
            return results
        args = [
            value
            for i in missing
            for value in (windows[i], quotas[i], lease_size(quotas[i], self.lease_percent))
        ]
        command = (
            "EVALSHA",
            self.script.sha,
            len(missing),
            *(keys[i] for i in missing),
            *args,
            LEASE_SHARE,
        )
        # Every request that holds no lease comes here: the script is sent on a connection
        # this thread keeps, not through the pool's checkout, retry and event machinery around
        # each command, which costs as much CPU again as the round trip itself.
        conn = self._connection()
        try:
            values = self._run(conn, command)
        except RedisConnectionError:
            # A connection Redis closed since its last use (a restart, a proxy's idle
            # timeout) fails on first use: once more on a new one before failing open.
            values = self._run(conn, command)
        with self._lock:
            for n, i in enumerate(missing):
                count, left, taken = (
                    int(values[3 * n]),
                    int(values[3 * n + 1]),
                    int(values[3 * n + 2]),
                )
                seconds = left / 1000
                if count > quotas[i]:
                    results[i] = (count, seconds)  # refused (a lease of one, by then)
                    continue
                unused = taken - 1
                results[i] = (count - unused, seconds)
                if unused:
                    self._keep(keys[i], _Lease(unused, count, now + seconds))
        return results

    def _keep(self, key: str, lease: _Lease) -> None:
        leases = self._leases
        held = leases.get(key)
        if held is not None and held.left and time.monotonic() < held.ends:
            # Another thread took one in the same window meanwhile: keep both.
            lease.left += held.left
        if len(leases) >= LEASES_KEPT and key not in leases:
            now = time.monotonic()
            for old in [k for k, v in leases.items() if not v.left or v.ends <= now]:
                del leases[old]
            if len(leases) >= LEASES_KEPT:
                leases.clear()  # what is dropped is only counted early, never given twice
        leases[key] = lease

    @staticmethod
    def _run(conn: Any, command: tuple[Any, ...]) -> Any:
        try:
            try:
                conn.send_command(*command)
                return conn.read_response()
            except NoScriptError:  # a new or flushed Redis: load the script, once
                conn.send_command("SCRIPT", "LOAD", _HIT_SCRIPT)
                conn.read_response()
                conn.send_command(*command)
                return conn.read_response()
        except BaseException:
            conn.disconnect()  # nothing half-read is left for the next request
            raise

    def peek(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        values = pipe.execute()
        return [
            (int(values[i] or 0), max(0, int(values[i + 1])) / 1000)
            for i in range(0, len(values), 2)
        ]

    def clear(self, keys: Sequence[str]) -> None:
        self.redis.delete(*keys)
        with self._lock:
            for key in keys:
                self._leases.pop(key, None)


def _caller_digest(caller: str) -> str:
    return keyed_digest(caller.encode())[:32]


class RateLimiter:
    """An app's rate limits, at ``app.extensions["mars_ratelimit"]`` while enabled."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.default = Policy.of(DEFAULT_POLICY, settings["RATELIMIT_DEFAULT"])
        self.anonymous = Policy.of(ANONYMOUS_POLICY, settings["RATELIMIT_ANONYMOUS"])
        self.counters: MemoryCounters | RedisCounters = (
            RedisCounters(settings["REDIS_URL"], settings["RATELIMIT_LEASE_PERCENT"])
            if settings["REDIS_URL"]
            else MemoryCounters()
        )
        #: (endpoint, method) -> the operation's own policy
        self.operations: dict[tuple[str, str], Policy] = {}
        self._down_until = 0.0
        self._outage = False
        self._lock = threading.Lock()
        #: caller -> its keyed digest; the callers seen lately need no HMAC each request.
        self._digest = functools.lru_cache(maxsize=DIGEST_CACHE_SIZE)(_caller_digest)

    # -- set-up ----------------------------------------------------------------------------

    def register_operations(self, app: Flask) -> None:
        """Find the views that :meth:`Blueprint.rate_limit` marked (once, at start-up)."""
        by_name: dict[str, Policy] = {}
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            view_class = getattr(view, "view_class", None)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                func = getattr(view_class, method.lower(), None) if view_class else view
                limit: OperationLimit | None = getattr(func, OPERATION_LIMIT_ATTR, None)
                if limit is None:
                    continue
                doc = getattr(func, "_apidoc", {}).get("manual_doc", {})
                name = limit.name or doc.get("operationId") or f"{rule.endpoint}.{method.lower()}"
                policy = Policy.of(name, limit.rate)
                taken = by_name.get(name, policy) != policy
                if taken or name in (DEFAULT_POLICY, ANONYMOUS_POLICY):
                    raise ValueError(
                        f"rate-limit policy {name!r} of {method} {rule.rule} is already "
                        "another policy: give the operation's limit another name"
                    )
                by_name[name] = policy
                self.operations[(rule.endpoint, method)] = policy

    def policies(self, key: str) -> list[Policy]:
        """Every policy a caller key (``user:...``, ``client:...``, ``address:...``) counts in."""
        first = self.anonymous if key.startswith("address:") else self.default
        return [first, *sorted(set(self.operations.values()), key=lambda p: p.name)]

    # -- per request -----------------------------------------------------------------------

    @staticmethod
    def caller_key() -> str:
        """Who the request counts against (see the module's docstring)."""
        try:
            actor = current_actor()
        except MarsError:  # invalid credentials: the view answers 401; the address pays
            actor = None
        if actor is None:
            return "address:" + address_key(request.remote_addr)
        return f"{actor.kind}:{actor.id}"

    def storage_key(self, caller: str, policy: Policy) -> str:
        # Keyed digest: the store never holds an address. The braces keep one caller's
        # counters in one Redis Cluster slot.
        return f"{KEY_PREFIX}:{{{self._digest(caller)}}}:{policy.name}"

    def check(self) -> None:
        """before_request: count the request, or refuse it (:class:`RateLimited`)."""
        path = request.path
        if (
            request.method == "OPTIONS"
            or not is_api_path(path)
            or path.rstrip("/").count("/") == 2  # /api/v1 itself: the index
            or path == OPENAPI_PATH
            or time.monotonic() < self._down_until
        ):
            return
        caller = self.caller_key()
        policies = [self.anonymous if caller.startswith("address:") else self.default]
        method = "GET" if request.method == "HEAD" else request.method
        operation = self.operations.get((request.endpoint or "", method))
        if operation is not None:
            policies.append(operation)
        try:
            counts = self.counters.hit(
                [self.storage_key(caller, p) for p in policies],
                [p.window for p in policies],
                [p.quota for p in policies],
            )
        except self.counters.errors as exc:
            self._failed(exc)
            return
        if self._outage:
            self._recovered()
        usage = [
            Usage(policy, count, max(1, math.ceil(left)))
            for policy, (count, left) in zip(policies, counts, strict=True)
        ]
        g.mars_ratelimit = usage
        exhausted = [u for u in usage if u.exhausted]
        if exhausted:
            for u in exhausted:
                rejections.labels(policy=u.policy.name).inc()
            raise RateLimited(max(u.reset for u in exhausted), [u.policy.name for u in exhausted])

    def count_operation(self, name: str) -> None:
        """Count one call of the operation whose own policy is ``name`` (its operationId)
        for the request's caller, as a call of the operation itself counts: GraphQL's
        mutations count against the REST operations they mirror. The request itself has
        been counted in the caller's ``default`` policy already.

        :raises RateLimited: the policy's quota is used up.
        :raises LookupError: no operation has a policy of that name (a plugin's mistake).
        """
        policy = next((p for p in self.operations.values() if p.name == name), None)
        if policy is None:
            raise LookupError(f"no operation has the rate-limit policy {name!r}")
        if time.monotonic() < self._down_until:
            return
        try:
            [(count, left)] = self.counters.hit(
                [self.storage_key(self.caller_key(), policy)], [policy.window], [policy.quota]
            )
        except self.counters.errors as exc:
            self._failed(exc)
            return
        usage = Usage(policy, count, max(1, math.ceil(left)))
        if usage.exhausted:
            rejections.labels(policy=policy.name).inc()
            raise RateLimited(usage.reset, [policy.name])

    def _failed(self, exc: Exception) -> None:
        storage_errors.inc()
        with self._lock:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
            first, self._outage = not self._outage, True
        if first:
            log.error(
                "rate limits are off: their storage failed (%s: %s); requests are served "
                "unlimited, and Redis is tried again every %s seconds",
                type(exc).__name__,
                exc,
                OUTAGE_BACKOFF_SECONDS,
            )

    def _recovered(self) -> None:
        with self._lock:
            was, self._outage = self._outage, False
        if was:
            log.warning("rate limits are back on: their storage answers again")

    # -- operators -------------------------------------------------------------------------

    def usage(self, key: str) -> list[Usage]:
        """Where caller ``key`` stands in each of its policies, counting nothing."""
        policies = self.policies(key)
        counts = self.counters.peek([self.storage_key(key, p) for p in policies])
        return [
            Usage(policy, count, max(0, math.ceil(left)) if count else policy.window)
            for policy, (count, left) in zip(policies, counts, strict=True)
        ]

    def reset(self, key: str) -> None:
        """Forget what caller ``key`` has used in every policy."""
        self.counters.clear([self.storage_key(key, p) for p in self.policies(key)])


def init_app(app: Flask) -> None:
    """Set up the app's rate limits (after its blueprints are registered): the limiter, the
    check before each request (add it before the idempotency claim) and the header fields.
    Nothing when ``MARS_RATELIMIT_ENABLED`` is false."""
    settings = app.config["MARS"]
    if not settings["RATELIMIT_ENABLED"]:
        return
    limiter = RateLimiter(settings)
    limiter.register_operations(app)
    app.extensions["mars_ratelimit"] = limiter


def limiter_of(app: Flask) -> RateLimiter | None:
    return app.extensions.get("mars_ratelimit")


def count_operation(name: str) -> None:
    """:meth:`RateLimiter.count_operation` in the current app, while rate limits are on."""
    limiter = limiter_of(current_app)
    if limiter is not None:
        limiter.count_operation(name)


def check_rate_limits() -> None:
    """before_request, after the request head's checks and before the idempotency claim."""
    limiter = current_app.extensions.get("mars_ratelimit")
    if limiter is not None:
        limiter.check()


def add_rate_limit_headers(response: Response) -> Response:
    """after_request: ``RateLimit-Policy`` and ``RateLimit`` on the answer of a counted request."""
    usage: list[Usage] | None = g.pop("mars_ratelimit", None)
    if usage:
        response.headers["RateLimit-Policy"] = ", ".join(u.policy.field for u in usage)
        response.headers["RateLimit"] = ", ".join(u.field for u in usage)
    return response


def operation_limit(rate: str, name: str | None = None) -> Callable[[Any], Any]:
    """Mark a view function with its own rate-limit policy (see :meth:`Blueprint.rate_limit`)."""
    parse_rate(rate)  # a bad rate fails where the plugin declares it
    if name is not None and not _POLICY_NAME.match(name):
        raise ValueError(f"rate-limit policy name {name!r}: letters, digits, _ . : - only")

    def mark(func: Any) -> Any:
        setattr(func, OPERATION_LIMIT_ATTR, OperationLimit(rate, name))
        return func

    return mark
