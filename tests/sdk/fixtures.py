"""Fixtures of the SDK tests: SDK clients signed in to a live MARS on loopback.

Used with ``pytest_plugins = ["tests.sdk.fixtures"]``. When ``MARS_TEST_SDK_RECORD`` names a
file, every response an SDK client gets is recorded there (one JSON line each), so the
coverage meta-test can tell which operations the tests exercised.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

import pytest

from mars_sdk import MarsClient
from mars_server.testing import make_token, make_user
from tests.sdk import PASSWORD
from tests.webhook_receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests
    from flask import Flask

RECORD_ENV = "MARS_TEST_SDK_RECORD"


def record_responses(client: MarsClient, path: str) -> None:
    """Append ``{"method", "path", "status"}`` of each response ``client`` gets to ``path``."""

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        entry = {
            "method": response.request.method,
            "path": (response.request.path_url or "").split("?")[0],
            "status": response.status_code,
        }
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    client.session.hooks["response"].append(record)


def operation_of(spec: dict[str, Any], method: str, path: str) -> str | None:
    """The operationId of the document's operation that ``method path`` calls."""
    best: tuple[int, str] | None = None
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        operation = item.get(method.lower())
        if operation and re.match(pattern, path):
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, operation["operationId"])
    return best[1] if best else None


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
