"""Every Python example of mars_sdk/README.md runs, as written, against a live MARS."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import pytest

from mars_server.testing import run_due_jobs
from tests.test_sdk_auth import REDIRECT, approve_in_browser

pytest_plugins = ["tests.sdk.fixtures"]
README = Path(__file__).resolve().parents[1] / "mars_sdk" / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True}


@contextlib.contextmanager
def worker_running(app):
    """A worker beside the live server, as `mars serve` runs one."""
    stop = threading.Event()

    def work():
        while not stop.is_set():
            run_due_jobs(app, max_seconds=1)
            stop.wait(0.1)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def readme_variables(developer, live_server: str, receiver) -> dict[str, str]:
    """The variables the README's examples read: a developer's token, an OAuth app of theirs
    (``developer`` is an SDK client), MARS's and a webhook receiver's addresses."""
    oauth_app = developer.apps.create(
        name="Rover dashboard",
        client_type="confidential",
        redirect_uris=[REDIRECT],
        scopes=["account:read", "projects:read"],
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )
    return {
        "MARS_URL": live_server,
        "MARS_TOKEN": developer.auth._token,
        "MARS_CLIENT_ID": oauth_app.client_id,
        "MARS_CLIENT_SECRET": oauth_app.client_secret,
        "MARS_REDIRECT_URI": REDIRECT,
        "MARS_WEBHOOK_URL": receiver.url(),
    }


def assert_readme_output(out: str, developer) -> None:
    assert f"Signed in as {developer.user.email}" in out
    assert "0 projects visible to the app" in out
    assert "/slug: " in out and "409: " in out and "deleted" in out and "v1" in out
    assert "/api/v1/me/exports/exp_" in out  # the long-running operation ended
    assert "graphql 422 /slug" in out


def test_the_readme_examples_run(app, live_server, sdk, receiver, monkeypatch, capsys):
    developer = sdk()
    for name, value in readme_variables(developer, live_server, receiver).items():
        monkeypatch.setenv(name, value)
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "readme"}
    with worker_running(app):  # the long-running operation's job
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    assert_readme_output(capsys.readouterr().out, developer)

    # The sign-in example's two routes, with a user in a browser between them.
    url = namespace["sign_in"]("session-1")
    me = namespace["callback"]("session-1", approve_in_browser(url, developer.user.email))
    assert me.id == developer.user.id

    # The webhook handler, with a real delivery and a forged one.
    namespace["client"].projects.create(slug="hooked", name="Hooked")
    run_due_jobs(app)  # relays the README's own project.created too: the endpoint sees both
    [delivery] = [r for r in receiver.wait_for(2) if b'"hooked"' in r.body]
    assert namespace["handle_webhook"](delivery.body, delivery.headers) == 204
    assert "project.created hooked" in capsys.readouterr().out
    forged = delivery.body.replace(b"hooked", b"hacked")
    assert namespace["handle_webhook"](forged, delivery.headers) == 400
