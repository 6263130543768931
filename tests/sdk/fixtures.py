"""Fixtures of the SDK tests: SDK clients signed in to a live MARS on loopback.

Used with ``pytest_plugins = ["tests.sdk.fixtures"]``. When ``MARS_TEST_SDK_RECORD`` names a
file, every response an SDK client gets is recorded there (one JSON line each), so the
coverage meta-test can tell which operations the tests exercised.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from mars_sdk import MarsClient
from mars_server.testing import SDK_RECORD_ENV, make_token, make_user, record_sdk_responses
from tests.sdk import PASSWORD
from tests.webhook_receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from flask import Flask

RECORD_ENV = SDK_RECORD_ENV
record_responses = record_sdk_responses


@pytest.fixture
def sdk(app: Flask, live_server: str) -> Iterator[Callable[..., MarsClient]]:
    """``sdk(user=None, scopes=None, **client_options)``: a MarsClient of ``live_server``.

    Signed in with a real personal access token of ``user`` (a new member by default);
    ``client.user`` is the user. Pass ``token=`` or ``auth=`` to sign in otherwise, or
    ``anonymous=True`` for no credentials.
    """
    clients: list[MarsClient] = []

    def make(
        user: Any = None, scopes: Any = None, *, anonymous: bool = False, **options: Any
    ) -> MarsClient:
        if not anonymous and "token" not in options and "auth" not in options:
            user = user if user is not None else make_user(app, password=PASSWORD)
            options["token"] = make_token(app, user, scopes)
        options.setdefault("base_url", live_server)
        client = MarsClient(**options)
        if os.environ.get(RECORD_ENV):
            record_responses(client, os.environ[RECORD_ENV])
        client.user = user  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def admin(app: Flask) -> Any:
    """A user with the ``admin`` role."""
    return make_user(app, roles=("admin",), password=PASSWORD)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (the app needs ``WEBHOOKS_ALLOW_PRIVATE``)."""
    receiver = Receiver()
    yield receiver
    receiver.close()
