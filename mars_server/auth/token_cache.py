"""The token -> caller cache, and the generation that keeps revocation instant.

Checking a token needs its row, its user's status and roles. They are cached (namespace
``auth`` of :mod:`mars_server.cache`), keyed by the token's digest, never the token, for at
most ``MARS_TOKEN_CACHE_SECONDS`` and never past the token's expiry, which every hit
checks again. Each entry carries a MAC under ``MARS_SECRET_KEY``: write access to Redis is
not enough to make MARS accept a token.

Every entry carries the *generation* read before the database was: a lookup fetches the
entry and the current generation together, and an entry of another generation is a miss.
Whatever can change the answer for some token (a token revoked or its scopes changed, a
user disabled or deleted, a role given or taken away, an app's secret or scopes changed,
an app deleted) sets a new generation once its transaction has committed; so the next
request, on any instance, reads the database again. The changes are found where they are
written, not where they are asked for: the ORM's flushes of the models and columns below,
and ``UPDATE``/``DELETE`` statements run through the session on their tables (a statement
that changes nothing the check reads says so with the execution option
``mars_auth_cache="keep"``). A rollback sets no new generation.

Where the generation lives:

- with Redis (``MARS_REDIS_URL``): beside the entries; every instance shares both. Each
  process also keeps the entries it used in its memory and knows the generation without
  asking: a connection of its own has Redis report every change of the generation key
  (``CLIENT TRACKING ... BCAST``, the invalidation messages Redis's client-side caching is
  built on), and before each lookup the process reads what has arrived there (a poll of a
  socket, microseconds). A revocation's new generation is written after its commit and
  before its answer leaves, and Redis sends the invalidation out with the write's reply, so
  the next request anywhere sees it. A warm token thus costs no round trip to Redis. While
  that connection is down, or once a second regardless (a connection that silently stopped
  delivering must not be trusted for long), the generation is read from Redis with the
  entry, in one ``MGET``, as it is when no local entry is current. Redis unreachable:
  tokens are checked in the database, and a new generation that could not be written is
  written before this process trusts the cache again.
- without: in a small file of the instance folder, read (``pread``, a microsecond) on each
  lookup, so processes of one machine sharing the instance folder (gunicorn workers, a
  ``mars`` command beside ``mars serve``) see each other's changes; the entries stay in each
  process's memory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from mars_server import cache as shared_cache
from mars_server.auth.models import (
    OAuthClient,
    OAuthConsent,
    OAuthToken,
    PersonalAccessToken,
    User,
    UserRole,
)
from mars_server.crypto import keyed_digest

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import ORMExecuteState, UOWTransaction

log = logging.getLogger(__name__)

NAMESPACE = "auth"
GENERATION_KEY = "gen"
GENERATION_FILE = "auth-token-cache.gen"
EXTENSION = "mars.auth.token_cache"
#: the execution option by which an UPDATE on a watched table says the check is unchanged.
KEEP_OPTION = "mars_auth_cache"
_CHANGED = "mars_auth_changed"
_GENERATION_BYTES = 16
#: where Redis publishes the invalidation messages of a RESP2 connection's key tracking.
INVALIDATION_CHANNEL = "__redis__:invalidate"
#: seconds a generation followed through invalidation messages is trusted before it is
#: read again: a tracking connection that silently stopped delivering is found out soon.
VERIFY_SECONDS = 1.0
#: tries to write a new generation to Redis, and the pause between them (seconds).
GENERATION_TRIES = 3
GENERATION_RETRY_SECONDS = 0.1

#: the columns a token's check reads, per model; a change to one of them (or the row's
#: deletion) sets a new generation. ``None``: any change, the row's creation included.
WATCHED: dict[type, frozenset[str] | None] = {
    PersonalAccessToken: frozenset({"digest", "user_id", "scopes", "expires_at", "revoked_at"}),
    OAuthToken: frozenset(
        {
            "access_digest",
            "user_id",
            "client_id",
            "scope",
            "access_expires_at",
            "refresh_expires_at",
            "revoked_at",
        }
    ),
    User: frozenset({"status"}),
    UserRole: None,
    OAuthClient: frozenset(
        {
            "client_id",
            "secret_digest",
            "previous_secret_digest",
            "previous_secret_expires_at",
            "scopes",
        }
    ),
    OAuthConsent: frozenset({"scope"}),
}
_WATCHED_TABLES = frozenset(model.__tablename__ for model in WATCHED)  # type: ignore[attr-defined]
_INSERT_WATCHED = frozenset(
    model.__tablename__  # type: ignore[attr-defined]
    for model, columns in WATCHED.items()
    if columns is None
)


def _new_generation() -> str:
    return secrets.token_hex(_GENERATION_BYTES // 2)


def _mac(key: str, payload: bytes) -> str:
    return keyed_digest(b"token-cache\0" + key.encode() + b"\0" + payload)


def _sealed(key: str, payload: bytes) -> dict[str, str]:
    """What the shared cache holds for an entry: its JSON and a MAC under MARS's secret key
    over the entry's key and JSON. Whoever can write to Redis but does not hold the key
    cannot make an entry MARS accepts (one naming an admin for a made-up token, say)."""
    return {"p": payload.decode(), "m": _mac(key, payload)}


def _opened(key: str, raw: bytes) -> bytes | None:
    """The entry's JSON if its MAC holds, else ``None`` (a miss, logged)."""
    try:
        found = orjson.loads(raw)
        payload, mac = found["p"].encode(), found["m"]
        if hmac.compare_digest(mac, _mac(key, payload)):
            return payload
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        pass
    log.warning("a token cache entry failed its integrity check and was ignored")
    return None


class _FileGeneration:
    """The generation in a file of the instance folder, shared by the processes using it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._reported = False

    def _open(self) -> int:
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                    if os.fstat(fd).st_size < _GENERATION_BYTES:
                        os.pwrite(fd, _new_generation().encode(), 0)
                    self._fd = fd
        return self._fd

    def read(self) -> str | None:
        """The generation; ``None`` when the file cannot be used (tokens are then checked
        in the database, every time)."""
        try:
            return os.pread(self._open(), _GENERATION_BYTES, 0).decode("ascii", "replace")
        except OSError as exc:
            self._failed(exc)
            return None

    def write(self) -> bool:
        try:
            # One small write at offset 0: a reader sees the old or the new generation (a
            # torn read would only be a generation no entry has: a miss).
            os.pwrite(self._open(), _new_generation().encode(), 0)
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: OSError) -> None:
        if not self._reported:  # once: it fails the same way on every request
            self._reported = True
            log.error(
                "the token cache is off: its generation file %s cannot be used (%s); "
                "tokens are checked in the database on every request",
                self.path,
                exc.strerror,
            )


class _TrackedGeneration:
    """The generation in Redis as this process last read it, kept while Redis reports no
    change of it: a connection of its own, subscribed to the invalidation messages of
    ``CLIENT TRACKING ON BCAST PREFIX <generation key>`` (RESP2, redirected to itself)."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._retry_at = 0.0
        #: what the generation was when last read, while no change has been reported since
        self._known: str | None = None
        self._known_at = 0.0
        #: counts the reports (and reconnections): a read begun before one must not be kept
        self._epoch = 0
        #: whether the last attempt to connect failed (and was logged)
        self._failing = False

    def current(self) -> tuple[str | None, int]:
        """``(generation, epoch)``: the generation when it is known and cannot have changed
        since (else ``None``), and the epoch to :meth:`learn` a freshly read one under."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker: the parent's socket is not ours
                self._conn, self._pid, self._known = None, os.getpid(), None
            if self._conn is None and time.monotonic() >= self._retry_at:
                self._connect()
            if self._conn is not None:
                try:
                    while self._conn.can_read(timeout=0):
                        self._conn.read_response()
                        self._forget()
                except (redis.RedisError, OSError):
                    self._drop()
            if self._known is not None and time.monotonic() - self._known_at > VERIFY_SECONDS:
                self._known = None
            return self._known, self._epoch

    def learn(self, generation: str, epoch: int) -> None:
        """Keep ``generation``, read from Redis after :meth:`current` returned ``epoch``, if
        nothing was reported since (a change reported since may be newer than the read)."""
        with self._lock:
            if self._conn is not None and epoch == self._epoch:
                self._known, self._known_at = generation, time.monotonic()

    def _forget(self) -> None:
        self._known = None
        self._epoch += 1

    def _connect(self) -> None:
        conn = None
        try:
            conn = redis.ConnectionPool.from_url(
                self.url,
                protocol=2,
                socket_timeout=shared_cache.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=shared_cache.REDIS_SOCKET_TIMEOUT,
            ).make_connection()
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            conn.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self.key
            )
            conn.read_response()
            conn.send_command("SUBSCRIBE", INVALIDATION_CHANNEL)
            conn.read_response()
        except (redis.RedisError, OSError) as exc:
            if conn is not None:
                conn.disconnect()
            self._retry_at = time.monotonic() + shared_cache.REDIS_BACKOFF_SECONDS
            if not self._failing:  # once, not every second while it lasts
                self._failing = True
                log.warning(
                    "the token cache cannot follow the generation in Redis (%s): each token "
                    "check reads it from Redis until it can (tried again every %s s)",
                    exc,
                    shared_cache.REDIS_BACKOFF_SECONDS,
                )
            return
        if self._failing:
            self._failing = False
            log.warning("the token cache follows the generation in Redis again")
        self._conn = conn
        self._forget()

    def _drop(self) -> None:
        """The connection failed: what it would have reported may be lost."""
        with contextlib.suppress(redis.RedisError, OSError):
            self._conn.disconnect()
        self._conn = None
        self._retry_at = time.monotonic() + shared_cache.REDIS_BACKOFF_SECONDS
        self._forget()


class TokenCache:
    """One app's token cache: entries in its :mod:`~mars_server.cache` namespace ``auth``."""

    def __init__(
        self,
        namespace: shared_cache.Namespace,
        seconds: int,
        instance_path: str,
        redis_url: str | None = None,
    ):
        self.namespace = namespace
        self.seconds = seconds
        self._file = (
            None
            if namespace.cache.shared
            else _FileGeneration(Path(instance_path, GENERATION_FILE))
        )
        #: with Redis: the generation as followed by this process, and the entries it used.
        self._tracked = (
            _TrackedGeneration(redis_url, namespace.key(GENERATION_KEY))
            if redis_url and self._file is None
            else None
        )
        self._local = shared_cache.MemoryBackend()
        #: a new generation this process could not write (Redis down): until it is written,
        #: this process does not trust the cache.
        self._pending = False

    def lookup(self, kind: str, digest: str) -> tuple[str | None, dict[str, Any] | None]:
        """``(generation, entry)``: the entry when it is current, and the generation to
        :meth:`store` a fresh one with after reading the database (``None``: do not)."""
        if self._pending and not self.new_generation():
            return None, None
        key = f"{kind}:{digest}"
        if self._file is not None:
            generation = self._file.read()
            found = self.namespace.read([key])
            raw = None if found is None else found[0]
        else:
            known, epoch = self._tracked.current() if self._tracked else (None, 0)
            if known is not None:
                local = self._local.get_many([key])[0]
                if local is not None:
                    entry = orjson.loads(local)
                    if entry.get("g") == known:
                        self.namespace.count("hit")
                        return known, entry
            found = self.namespace.read([GENERATION_KEY, key])
            stored, raw = (None, None) if found is None else found
            generation = None if stored is None else orjson.loads(stored)
            if generation is not None and self._tracked is not None:
                self._tracked.learn(generation, epoch)
        if found is None:
            self.namespace.count("error")
            return None, None
        payload = None if raw is None else _opened(key, raw)
        if payload is not None and generation is not None:
            entry = orjson.loads(payload)
            if entry.get("g") == generation:
                self.namespace.count("hit")
                if self._tracked is not None:
                    self._local.set(key, payload, self._local_ttl(entry), only_if_absent=False)
                return generation, entry
        self.namespace.count("miss")
        if generation is None and self._file is None:
            generation = self._first_generation()
        return generation, None

    def _first_generation(self) -> str | None:
        """Redis holds no generation (a new or emptied server): set one, unless another
        instance just did."""
        generation = _new_generation()
        if self.namespace.add(GENERATION_KEY, generation):
            return generation
        found = self.namespace.read([GENERATION_KEY])
        return orjson.loads(found[0]) if found and found[0] is not None else None

    def store(
        self, kind: str, digest: str, generation: str, entry: dict[str, Any], until: dt.datetime
    ) -> None:
        """Cache ``entry`` under ``generation`` for the setting's seconds, or until
        ``until`` (the token's expiry) when that comes first."""
        ttl = min(float(self.seconds), (until - dt.datetime.now(dt.UTC)).total_seconds())
        if ttl > 0:
            key = f"{kind}:{digest}"
            payload = orjson.dumps({**entry, "g": generation})
            self.namespace.set(key, _sealed(key, payload), ttl=ttl)
            if self._tracked is not None:
                self._local.set(key, payload, ttl, only_if_absent=False)

    def _local_ttl(self, entry: dict[str, Any]) -> float:
        """How long this process may keep an entry read from Redis: the setting's seconds,
        never past the token's expiry (checked on every hit regardless)."""
        until = dt.datetime.fromisoformat(entry.get("access_expires_at") or entry["expires_at"])
        left = (until - dt.datetime.now(dt.UTC)).total_seconds()
        return max(0.001, min(float(self.seconds), left))

    def new_generation(self) -> bool:
        """Make every entry stale (on every instance); ``False`` if that could not be done
        now (it is tried again before the next lookup)."""
        done = self._file.write() if self._file is not None else self._write_generation()
        self._pending = not done
        return done

    def _write_generation(self) -> bool:
        """Set a new generation in Redis, trying :data:`GENERATION_TRIES` times whatever
        the cache's back-off after an error says: other instances serve what this change
        revoked until they read it (or their entries expire)."""
        backend = self.namespace.cache.backend
        if not isinstance(backend, shared_cache.RedisBackend):
            return self.namespace.set(GENERATION_KEY, _new_generation())
        key = self.namespace.key(GENERATION_KEY)
        for attempt in range(GENERATION_TRIES):
            if attempt:
                time.sleep(GENERATION_RETRY_SECONDS)
            try:
                backend.client.set(key, orjson.dumps(_new_generation()))
                return True
            except (redis.RedisError, OSError) as exc:
                error = exc
        log.error(
            "other instances may accept what a change to tokens, users or roles revoked for "
            "up to %s seconds (MARS_TOKEN_CACHE_SECONDS): Redis did not take the token "
            "cache's new generation (%s); this process tries again before its next check",
            self.seconds,
            error,
        )
        return False


def token_cache(app: Flask | None = None) -> TokenCache:
    """The token cache of ``app`` (by default the current app), made on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    found: TokenCache | None = app.extensions.get(EXTENSION)
    if found is None:
        settings = app.config["MARS"]
        found = app.extensions.setdefault(
            EXTENSION,
            TokenCache(
                shared_cache.get_cache(app).namespace(NAMESPACE),
                settings["TOKEN_CACHE_SECONDS"],
                settings["INSTANCE_PATH"],
                settings["REDIS_URL"],
            ),
        )
    return found


def enabled_token_cache() -> TokenCache | None:
    """The current app's token cache, or ``None`` when ``MARS_TOKEN_CACHE_SECONDS`` is 0."""
    found = token_cache()
    return found if found.seconds else None


# -- finding the changes ---------------------------------------------------------------------


def _changed(obj: Any, columns: frozenset[str] | None) -> bool:
    if columns is None:
        return True
    state = sa.inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in columns)


def _after_flush(session: Session, _flush_context: UOWTransaction) -> None:
    if session.info.get(_CHANGED):
        return
    for obj in session.deleted:
        if type(obj) in WATCHED:
            session.info[_CHANGED] = True
            return
    for obj in session.new:
        if type(obj) in WATCHED and WATCHED[type(obj)] is None:
            session.info[_CHANGED] = True
            return
    for obj in session.dirty:
        columns = WATCHED.get(type(obj), frozenset())
        if (columns is None or columns) and _changed(obj, columns):
            session.info[_CHANGED] = True
            return


def _statement_table(statement: Any) -> str | None:
    table = getattr(statement, "table", None)
    return getattr(table, "name", None)


def _on_execute(state: ORMExecuteState) -> None:
    """``UPDATE``/``DELETE`` (and ``INSERT`` of roles) on a watched table, run through the
    session without the unit of work."""
    if state.session.info.get(_CHANGED) or not (
        state.is_update or state.is_delete or state.is_insert
    ):
        return
    name = _statement_table(state.statement)
    if name not in _WATCHED_TABLES or (state.is_insert and name not in _INSERT_WATCHED):
        return
    if state.execution_options.get(KEEP_OPTION) == "keep":
        return
    state.session.info[_CHANGED] = True


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        token_cache().new_generation()


def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


_LISTENERS = (
    ("after_flush", _after_flush),
    ("do_orm_execute", _on_execute),
    ("after_commit", _after_commit),
    ("after_rollback", _after_rollback),
)


def install() -> None:
    """Watch every session for changes that make cached checks stale (once per process)."""
    for name, listener in _LISTENERS:
        if not sa.event.contains(Session, name, listener):
            sa.event.listen(Session, name, listener)
