from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from mars_server.testing import signed_in_client, xdist_worker
from tests import mailbox
from tests.redis_db import empty_redis_database

if TYPE_CHECKING:
    from collections.abc import Callable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest test files first (``@pytest.mark.slow(seconds)``): under pytest-xdist each
    file goes to a worker in this order, so the run does not end waiting on one of them."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return float(marker.args[0]) if marker is not None else 0.0

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture
def install_plugins(install_plugins: Callable[..., None]) -> Callable[..., None]:
    """MARS's public ``install_plugins``, for ``tests.fakes`` objects:
    ``install_plugins(name="attr", ...)``."""
    return lambda **plugins: install_plugins(
        **{name: f"tests.fakes:{attr}" for name, attr in plugins.items()}
    )


@pytest.fixture
def sqlite_app(tmp_path):
    """A migrated app on its own SQLite file, for what only SQLite does (locking)."""
    from mars_server import create_app
    from mars_server.ops import migrations
    from mars_server.testing import settings_for_tests

    def make(**overrides):
        app = create_app(
            settings_for_tests(f"sqlite:///{tmp_path / 'own.db'}", tmp_path / "inst", **overrides)
        )
        with app.app_context():
            migrations.upgrade()
        return app

    return make


@pytest.fixture
def project_body():
    counter = iter(range(1_000_000))

    def body(**overrides):
        n = next(counter)
        return {"slug": f"project-{n}", "name": f"Project {n}", **overrides}

    return body


@pytest.fixture
def client(app):
    """A test client signed in, on every request, as a member holding every scope.

    ``client.user`` is that user. For anonymous requests use ``app.test_client()``.
    """
    return signed_in_client(app)


smtp_server = pytest.fixture(mailbox.smtp_server_fixture, name="smtp_server")
smtp_app = pytest.fixture(mailbox.smtp_app_fixture, name="smtp_app")


@pytest.fixture
def redis_url() -> str:
    """The real Redis on this machine, in a database of its own, emptied for each test.

    ``MARS_TEST_REDIS_URL`` picks another server or database (the default: database 10 of
    127.0.0.1:6379). Skipped when Redis does not answer, except under CI, where it fails.
    """
    import redis

    url = os.environ.get("MARS_TEST_REDIS_URL", "redis://127.0.0.1:6379/10")
    worker = xdist_worker()
    if worker is not None:  # a database per pytest-xdist worker: 10, 11, 12...
        base, _, db = url.rpartition("/")
        url = f"{base}/{int(db or 0) + int(worker.removeprefix('gw'))}"
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        empty_redis_database(client)
    except redis.ConnectionError:
        if os.environ.get("CI") or os.environ.get("MARS_TEST_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"Redis does not answer at {url}")
    finally:
        client.close()
    return url


@pytest.fixture(autouse=True)
def _cache_keys_of_this_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under pytest-xdist, each worker's apps keep their cache keys under a prefix of their
    own. Redis's key tracking (the token cache's revocation generation) is server-wide, not
    per database: another worker's writes in its own database would otherwise reach this
    worker's tracking connection as invalidations."""
    worker = xdist_worker()
    if worker is not None:
        import mars_server.cache

        monkeypatch.setattr(mars_server.cache, "REDIS_PREFIX", f"mars:cache:{worker}:")
