"""MARS's pytest plugin (entry point ``pytest11``): the fixtures the core tests with.

Plugin packages get them by installing ``mars-server``:

- ``database_url`` (session): every test that uses the app runs once on SQLite and once
  on PostgreSQL; the PostgreSQL run is skipped, with the reason, unless
  ``MARS_TEST_DATABASE_URL`` names a database the suite may wipe.
- ``app_config``: override it to pass settings (``{"PLUGINS": {"projects": {...}}}``).
- ``app``, ``client``, ``runner``, ``db``: an app on a migrated database, emptied after
  each test; built once per process for each ``app_config`` and put back as built before
  each test (mark a test that adds routes or hooks ``mars_fresh_app``).
- ``make_app``: build another app on the same database (e.g. with other settings).
- ``migrated_database`` (session): the database URL, brought to every branch's head once.
- ``live_server``: the app served on a loopback port, for real HTTP clients.
- ``sdk``: ``mars_sdk`` clients of ``live_server``, signed in (mark such tests
  ``mars_sdk_live``: the SDK coverage meta-test runs them).
- ``run_jobs``: run the jobs that are due, as a worker would (``run_jobs()``).
- ``outbox``: the events the app committed (:class:`Outbox`), without importing MARS's models.
- ``notifications``: the in-app notifications committed (:class:`Notifications`), likewise.
- ``install_plugins``: make plugins look installed (entry points) for the apps built next.
- ``create_user``, ``token_for``, ``auth_headers``: a user, a personal access token of theirs
  and its ``Authorization`` header; the helpers ``make_user``, ``make_token`` and
  ``signed_in_client`` do the same from an app.

docs/plugins.md has the table of them.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pytest
import sqlalchemy as sa
from flask import current_app, has_app_context
from werkzeug.serving import make_server

from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from flask import Flask
    from flask.testing import FlaskClient, FlaskCliRunner
    from flask_sqlalchemy import SQLAlchemy

T = TypeVar("T")
BACKENDS = ("sqlite", "postgresql")
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-checks"
POSTGRES_SKIP_REASON = (
    "PostgreSQL run skipped: set MARS_TEST_DATABASE_URL, e.g. "
    "postgresql://postgres@127.0.0.1:5432/test (the suite wipes it)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mars-db",
        choices=("all", *BACKENDS),
        default="all",
        help="MARS: run the database tests on this backend only (default: all). "
        "With 'postgresql', tests that use no database are deselected.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mars_backend(name): run this database test on that backend only ('sqlite' or "
        "'postgresql'); on the other it is deselected, not skipped",
    )
    config.addinivalue_line(
        "markers",
        "mars_sdk_live: calls a live MARS through mars_sdk (the `sdk` fixture); MARS's SDK "
        "coverage meta-test runs every test so marked, a plugin's own included",
    )
    config.addinivalue_line(
        "markers",
        "mars_fresh_app: the `app` fixture builds a new app for this test instead of reusing "
        "one (the test adds routes or request hooks, which Flask takes only before a request)",
    )


def _wanted(item: pytest.Item, choice: str) -> bool:
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("database_url") if callspec else None
    only = item.get_closest_marker("mars_backend")
    if only is not None and backend is not None and backend != only.args[0]:
        return False
    return choice == "all" or backend == choice or (backend is None and choice == "sqlite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    choice = config.getoption("--mars-db")
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (keep if _wanted(item, choice) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def settings_for_tests(
    database_url: str, instance_path: Path | str, **overrides: Any
) -> dict[str, Any]:
    """The settings the fixtures build apps with; ``overrides`` win."""
    return {
        "ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(instance_path),
        "LOG_FORMAT": "json",
        # Rate limits stay on (every answer carries its RateLimit fields), but high: a test
        # sends its requests in a burst, from one address. Rate-limit tests set their own.
        "RATELIMIT_DEFAULT": "100000/minute",
        "RATELIMIT_ANONYMOUS": "100000/minute",
        # argon2id at its cheapest (8 KiB, 1 pass, 1 lane): a hash in under a millisecond,
        # against about 100 ms at production's cost, for the same code paths. Production
        # refuses this; tests of the cost itself set their own.
        "PASSWORD_HASH_MEMORY_KIB": 8,
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_PARALLELISM": 1,
        **overrides,
    }


def _reset_postgres(url: str) -> None:
    from mars_server.config import normalise_database_url
    from mars_server.ops.backup import empty_postgres

    empty_postgres(sa.make_url(normalise_database_url(url)))


def xdist_worker() -> str | None:
    """The pytest-xdist worker running this process's tests (``gw0``...), or ``None``."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def worker_database_url(url: str) -> str:
    """``url`` itself, or under pytest-xdist a database of this worker's own beside it
    (``test`` becomes ``test_gw1``), created on first use: workers never share a database."""
    worker = xdist_worker()
    if worker is None:
        return url
    from mars_server.config import normalise_database_url

    given = sa.engine.make_url(normalise_database_url(url))
    name = f"{given.database}_{worker}"
    engine = sa.create_engine(given, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database of each backend, once per session (per pytest-xdist worker)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'mars.db'}"
    url = os.environ.get("MARS_TEST_DATABASE_URL")
    if not url:
        pytest.skip(POSTGRES_SKIP_REASON)
    url = worker_database_url(url)
    _reset_postgres(url)
    return url


@pytest.fixture(scope="session")
def migrated_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``database_url`` upgraded to every head by the real migrations."""
    from mars_server import create_app
    from mars_server.db import db
    from mars_server.ops import migrations

    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_mars_environment(monkeypatch)
        app = create_app(settings_for_tests(database_url, tmp_path_factory.mktemp("instance")))
    with app.app_context():
        migrations.upgrade()
        db.engine.dispose()
    return database_url


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Extra settings for ``app``; override this fixture in a test module or conftest."""
    return {}


#: Tables with a trigger that runs on DELETE (PostgreSQL): the audit log refuses it.
_DELETE_TRIGGERS = sa.text(
    "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE NOT t.tgisinternal AND (t.tgtype & 8) = 8"
)


def empty_tables(db: SQLAlchemy) -> None:
    """Delete every row of every table (the schema stays).

    DELETE, children first: on the few rows a test leaves, it costs a quarter of a TRUNCATE
    of every table (about 9 against 37 ms on PostgreSQL). Tables whose trigger refuses
    DELETE (the append-only audit log) are truncated.
    """
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        guarded: set[str] = set()
        if conn.dialect.name == "postgresql":
            guarded = set(conn.scalars(_DELETE_TRIGGERS)) & {t.name for t in tables}
            if guarded:
                quote = conn.dialect.identifier_preparer.quote
                conn.execute(sa.text(f"TRUNCATE {', '.join(map(quote, sorted(guarded)))} CASCADE"))
        for table in tables:
            if table.name not in guarded:
                conn.execute(table.delete())


def _clear_mars_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own MARS_* settings must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith("MARS_") and not name.startswith("MARS_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_app(
    migrated_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database: ``make_app(**settings)``.

    After the test, the database is emptied and every app's connections are closed.
    """
    from mars_server import create_app
    from mars_server.db import db

    _clear_mars_environment(monkeypatch)
    built: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(settings_for_tests(migrated_database, tmp_path / "instance", **overrides))
        built.append(app)
        return app

    yield make
    for index, app in enumerate(built):
        with app.app_context():
            db.session.remove()
            if index == 0:
                empty_tables(db)
            db.engine.dispose()


@dataclass
class _Pristine:
    """What a reused app is put back to before each test: its settings and extensions as
    ``create_app`` left them."""

    config: dict[str, Any]
    extensions: dict[str, Any]
    state: dict[str, Any]


#: Apps the ``app`` fixture keeps for the next test (this process), by database and settings.
_REUSABLE: dict[tuple[str, str], tuple[Flask, _Pristine]] = {}
#: Settings whose app holds connections to other servers (Redis): such apps are never reused.
_NOT_REUSED = ("REDIS_URL", "JOBS_BACKEND", "CELERY_BROKER_URL")


def _reuse_key(database_url: str, app_config: dict[str, Any]) -> tuple[str, str] | None:
    """The key an app built with ``app_config`` is kept under, or ``None`` when it must be
    built for this test alone: settings of other servers, ``MARS_*`` variables in the
    environment, or plugins made to look installed (``install_plugins``)."""
    import importlib.metadata

    import mars_server.plugins

    if (
        any(name in app_config for name in _NOT_REUSED)
        or any(k.startswith("MARS_") and not k.startswith("MARS_TEST_") for k in os.environ)
        or mars_server.plugins.entry_points is not importlib.metadata.entry_points
    ):
        return None
    return database_url, repr(sorted(app_config.items()))


def _pristine(app: Flask) -> _Pristine:
    import copy

    state = mars_state(app)
    return _Pristine(
        config=copy.deepcopy(dict(app.config)),
        extensions=dict(app.extensions),
        state={name: copy.copy(value) for name, value in vars(state).items()},
    )


def _restore(app: Flask, pristine: _Pristine, instance_path: Path) -> None:
    """Put a reused ``app`` back as ``create_app`` left it, with its instance folder (mail,
    the token cache's generation file) moved to this test's ``instance_path``. The caches and
    the rate limiter's counters start empty."""
    import copy

    from mars_server import cache
    from mars_server.http import ratelimit

    app.config.clear()
    app.config.update(copy.deepcopy(pristine.config))
    settings = app.config["MARS"]
    settings["INSTANCE_PATH"] = app.instance_path = str(instance_path)
    instance_path.mkdir(parents=True, exist_ok=True)
    app.extensions.clear()
    app.extensions.update(pristine.extensions)
    app.extensions[cache.EXTENSION] = cache.Cache.from_settings(settings)
    if ratelimit.limiter_of(app) is not None:
        ratelimit.init_app(app)
    state = mars_state(app)
    for name, value in pristine.state.items():
        setattr(state, name, copy.copy(value))


@pytest.fixture
def app(
    make_app: Callable[..., Flask],
    app_config: dict[str, Any],
    migrated_database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Flask]:
    """A MARS app on a migrated, empty database; its app context is pushed.

    The app is built once per process for each set of settings (``app_config``) and put back
    as it was built before each test: settings, extensions, caches, rate-limit counters, an
    instance folder of the test's own (``tmp_path / "instance"``). After its first request
    Flask takes no new routes or hooks: mark a test that adds its own ``mars_fresh_app``.
    ``make_app`` always builds a new app."""
    from mars_server.db import db

    fresh = request.node.get_closest_marker("mars_fresh_app") is not None
    key = None if fresh else _reuse_key(migrated_database, app_config)
    if key is None:
        app = make_app(**app_config)
    elif key in _REUSABLE:
        app, pristine = _REUSABLE[key]
        _restore(app, pristine, tmp_path / "instance")
    else:
        from mars_server import create_app

        app = create_app(settings_for_tests(migrated_database, tmp_path / "instance", **app_config))
        _REUSABLE[key] = app, _pristine(app)
    with app.app_context():
        yield app
        db.session.remove()
        if key is not None:
            empty_tables(db)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """``app`` served by a real HTTP server on loopback; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def run_due_jobs(app: Flask, *, max_seconds: float = 60.0) -> int:
    """Relay committed events and run every due job now, in this thread, as a worker would;
    return how many jobs ran. Jobs retried for later are not waited for."""
    from mars_server.events.worker import Worker

    return Worker(app).run_until_idle(max_seconds=max_seconds)


@pytest.fixture
def run_jobs(app: Flask) -> Callable[..., int]:
    """``run_jobs()``: :func:`run_due_jobs` for ``app``."""
    return lambda **kwargs: run_due_jobs(app, **kwargs)


@dataclass(frozen=True)
class EmittedEvent:
    """An event as :func:`mars_server.events.emit` wrote it to the outbox."""

    id: str
    type: str
    payload: dict[str, Any]
    #: The users who may see the object it is about; ``None``: everyone.
    audience: list[str] | None
    actor_id: str | None


class _Committed(Generic[T]):
    """What the app has committed so far, oldest first: ``all()``; ``new()`` gives what came
    since its last call and ``one()`` the one thing since then (failing the test otherwise)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.seen = 0

    def all(self) -> list[T]:
        raise NotImplementedError

    def new(self) -> list[T]:
        everything = self.all()
        fresh, self.seen = everything[self.seen :], len(everything)
        return fresh

    def one(self) -> T:
        fresh = self.new()
        assert len(fresh) == 1, fresh
        return fresh[0]


class Outbox(_Committed[EmittedEvent]):
    """The events written so far, oldest first; ``new()`` gives those since its last call
    and ``one()`` the one event since then (failing the test otherwise)."""

    def all(self, type: str | None = None) -> list[EmittedEvent]:
        from mars_server.db import db
        from mars_server.events.models import OutboxEvent

        with _in_context(self.app):
            stmt = sa.select(OutboxEvent).order_by(OutboxEvent.occurred_at, OutboxEvent.id)
            if type is not None:
                stmt = stmt.where(OutboxEvent.type == type)
            with db.engine.connect() as connection:  # what is committed, whatever the session
                rows = connection.execute(stmt).all()
        return [
            EmittedEvent(row.id, row.type, row.payload, row.audience, row.actor_id) for row in rows
        ]


@pytest.fixture
def outbox(app: Flask) -> Outbox:
    """The events ``app`` has committed to its outbox (see :class:`Outbox`)."""
    return Outbox(app)


@dataclass(frozen=True)
class SentNotification:
    """An in-app notification as the notifications plugin stored it for a user."""

    user_id: str
    event_type: str
    title: str
    body: str
    link: str | None
    read: bool


class Notifications(_Committed[SentNotification]):
    """The in-app notifications committed so far, oldest first (run the jobs first:
    notifications are made by a handler); ``new()`` and ``one()`` as for :class:`Outbox`."""

    def all(self, user: Any = None, type: str | None = None) -> list[SentNotification]:
        """Every notification, or those of ``user`` (a user or a user id) and of ``type``."""
        from mars_server.db import db

        with _in_context(self.app), db.engine.connect() as connection:
            # The plugin's table, read without importing its code.
            table = sa.Table("notifications", sa.MetaData(), autoload_with=connection)
            stmt = sa.select(table).order_by(table.c.id)
            if user is not None:
                stmt = stmt.where(table.c.user_id == getattr(user, "id", user))
            if type is not None:
                stmt = stmt.where(table.c.event_type == type)
            rows = connection.execute(stmt).all()
        return [
            SentNotification(
                row.user_id, row.event_type, row.title, row.body, row.link, row.read_at is not None
            )
            for row in rows
        ]


@pytest.fixture
def notifications(app: Flask) -> Notifications:
    """The in-app notifications ``app`` has committed (see :class:`Notifications`)."""
    return Notifications(app)


@pytest.fixture
def install_plugins(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make plugins look installed for the apps the test builds next:
    ``install_plugins(name="package.module:attribute", ...)``, as entry points would name them."""
    import mars_server.plugins

    real = mars_server.plugins.entry_points

    def install(**plugins: str) -> None:
        from importlib.metadata import EntryPoint

        extra = [
            EntryPoint(name, value, mars_server.plugins.ENTRY_POINT_GROUP)
            for name, value in plugins.items()
        ]

        def fake_entry_points(*, group: str) -> list[EntryPoint]:
            return [*real(group=group), *extra]

        monkeypatch.setattr(mars_server.plugins, "entry_points", fake_entry_points)

    return install


#: How often a test's HTTP server looks for its shutdown: at the default half second, each
#: test with a server waited that long at its end.
SHUTDOWN_POLL_SECONDS = 0.02
#: When set, names a file where every response an ``sdk`` client gets is recorded, one JSON
#: line each (``{"method", "path", "status"}``): MARS's SDK coverage meta-test reads it.
SDK_RECORD_ENV = "MARS_TEST_SDK_RECORD"


def record_sdk_responses(client: Any, path: str) -> None:
    """Append ``{"method", "path", "status"}`` of each response ``client`` gets to ``path``."""

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        entry = {
            "method": response.request.method,
            "path": (response.request.path_url or "").split("?")[0],
            "status": response.status_code,
        }
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    client.session.hooks["response"].append(record)


@pytest.fixture
def sdk(app: Flask, live_server: str) -> Iterator[Callable[..., Any]]:
    """``sdk(user=None, scopes=None, **client_options)``: a ``mars_sdk.MarsClient`` of
    ``live_server``, signed in with a real personal access token of ``user`` (a new member
    by default); ``client.user`` is the user. Pass ``token=`` or ``auth=`` to sign in
    otherwise, or ``anonymous=True`` for no credentials. Skipped without ``mars_sdk``."""
    mars_sdk = pytest.importorskip("mars_sdk")
    clients: list[Any] = []

    def make(
        user: Any = None, scopes: Any = None, *, anonymous: bool = False, **options: Any
    ) -> Any:
        if not anonymous and "token" not in options and "auth" not in options:
            user = user if user is not None else make_user(app)
            options["token"] = make_token(app, user, scopes)
        options.setdefault("base_url", live_server)
        client = mars_sdk.MarsClient(**options)
        if os.environ.get(SDK_RECORD_ENV):
            record_sdk_responses(client, os.environ[SDK_RECORD_ENV])
        client.user = user
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db(app: Flask) -> SQLAlchemy:
    """Flask-SQLAlchemy's ``db``, inside the app's context."""
    from mars_server.db import db

    return db


def _in_context(app: Flask) -> AbstractContextManager[Any]:
    """``app``'s context, reusing the one a test has pushed (and so its session)."""
    if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
        return nullcontext()
    return app.app_context()


def make_user(app: Flask, **fields: Any) -> Any:
    """Create an active user in ``app`` (committed); ``fields`` override the defaults."""
    from mars_server.auth import accounts
    from mars_server.db import db

    with _in_context(app):
        fields = {
            "email": f"user-{uuid.uuid4().hex[:12]}@example.test",
            "status": "active",
            "display_name": "Test User",
            "roles": ("member",),
        } | fields
        user = accounts.create_user(fields.pop("email"), **fields)
        db.session.commit()
        db.session.refresh(user)  # loaded whole: usable after its session has gone
        return user


def make_token(app: Flask, user: Any, scopes: Any = None, **kwargs: Any) -> str:
    """A real personal access token for ``user`` (every declared scope unless given)."""
    from mars_server.auth import tokens
    from mars_server.db import db

    with _in_context(app):
        if scopes is None:
            scopes = sorted(mars_state(app).scopes)
        _, secret = tokens.create_personal_access_token(
            db.session.merge(user), name=kwargs.pop("name", "test"), scopes=list(scopes), **kwargs
        )
        db.session.commit()
        return secret


def signed_in_client(app: Flask, user: Any = None, scopes: Any = None) -> FlaskClient:
    """A test client sending a token of ``user`` (a new member by default) on every request;
    ``client.user`` is the user."""
    user = user if user is not None else make_user(app)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token(app, user, scopes)}"
    client.user = user  # type: ignore[attr-defined]
    return client


def graphql(client: FlaskClient, query: str, **variables: Any) -> dict[str, Any]:
    """POST ``query`` with ``variables`` to ``/api/v1/graphql``; the answer's JSON
    (``data`` and ``errors``), after checking it is a 200."""
    response = client.post("/api/v1/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.get_data(as_text=True)
    answer: dict[str, Any] = response.get_json()
    return answer


@pytest.fixture
def create_user(app: Flask) -> Callable[..., Any]:
    """``create_user(email=..., password=..., roles=("member",), status="active")``: a user."""
    return lambda **fields: make_user(app, **fields)


@pytest.fixture
def token_for(app: Flask) -> Callable[..., str]:
    """``token_for(user, scopes=[...])``: a real personal access token for ``user``."""
    return lambda user, scopes=None, **kwargs: make_token(app, user, scopes, **kwargs)


@pytest.fixture
def auth_headers(token_for: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """``auth_headers(user, scopes=[...])``: ``{"Authorization": "Bearer ..."}``."""

    def headers(user: Any, scopes: Any = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, scopes)}"}

    return headers
