"""The interactive docs render in a real browser with no internet (Debian's chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.chromium,
    # CI always has chromium (.ci/run installs it): there, its absence fails the test.
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("CI") != "true",
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]


def render(url: str, tmp_path) -> str:
    """The page's DOM after its scripts ran; every host but loopback is unreachable."""
    assert CHROMIUM, "CI must have chromium: .ci/run installs Debian's package"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_docs_render_every_operation_offline(live_server, tmp_path, client):
    dom = render(f"{live_server}/api/docs", tmp_path)
    assert "swagger-ui" in dom
    spec = client.get("/api/v1/openapi.json").json
    for _path, item in spec["paths"].items():
        for operation in item.values():
            if isinstance(operation, dict) and "summary" in operation:
                assert operation["summary"] in dom, operation["summary"]
    assert dom.count('class="opblock ') >= 7


def test_graphiql_renders_offline_and_reads_the_schema(live_server, tmp_path, monkeypatch):
    """GraphiQL's scripts come from installed packages; the page introspects the schema
    from /api/v1/graphql on its own origin, under its Content-Security-Policy."""
    from mars_server.graphql import views

    asked = []
    real = views.execute
    monkeypatch.setattr(
        views, "execute", lambda schema, data: asked.append(data) or real(schema, data)
    )
    dom = render(f"{live_server}/api/graphql", tmp_path)
    assert "graphiql-container" in dom, dom[-2000:]
    assert "Loading GraphiQL" not in dom  # the page's script ran
    assert "hasNextPage" in dom  # the default query, in the editor
    assert any("__schema" in data["query"] for data in asked), asked  # it read the schema
