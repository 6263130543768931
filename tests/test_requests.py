"""Request ids, JSON log lines, CORS."""

from __future__ import annotations

import io
import json
import logging

import pytest

from mars_server import create_app
from mars_server.config import ConfigError
from mars_server.testing import settings_for_tests


def test_well_formed_request_id_is_echoed(client):
    response = client.get("/api/v1/meta", headers={"X-Request-ID": "abc-123_def.456"})
    assert response.headers["X-Request-ID"] == "abc-123_def.456"


@pytest.mark.parametrize("bad", ["short", "a" * 129, "has space here", "<script>x</script>"])
def test_malformed_request_id_is_replaced(client, bad):
    response = client.get("/api/v1/meta", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_every_response_carries_a_request_id(client):
    for response in (client.get("/api/v1/meta"), client.get("/nope"), client.get("/healthz")):
        assert response.headers["X-Request-ID"]


def test_log_lines_are_json_with_the_request_id(client):
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "mars")
    old = handler.setStream(stream)
    try:
        client.get("/api/v1/meta", headers={"X-Request-ID": "trace-me-please"})
    finally:
        handler.setStream(old)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "mars.access"]
    assert access and access[0]["request_id"] == "trace-me-please"
    assert access[0]["status"] == 200
    assert {"time", "level", "message", "method", "path", "duration_ms"} <= set(access[0])


@pytest.fixture
def app_config():
    return {"CORS_ORIGINS": ["https://www.mars.test"]}


def test_cors_allows_the_configured_origin_with_credentials(client):
    response = client.get("/api/v1/meta", headers={"Origin": "https://www.mars.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://www.mars.test"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    preflight = client.options(
        "/api/v1/projects",
        headers={
            "Origin": "https://www.mars.test",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "If-Match, Content-Type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://www.mars.test"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]


def test_cors_ignores_other_origins(client):
    response = client.get("/api/v1/meta", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_wildcard_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        create_app(settings_for_tests("sqlite://", tmp_path, CORS_ORIGINS=["*"]))


@pytest.mark.parametrize("origin", ["https://.*", "https://[a-z]+.test", "https://a.test|b"])
def test_cors_origins_that_look_like_patterns_are_refused(tmp_path, origin):
    with pytest.raises(ConfigError, match="is not an origin"):
        create_app(settings_for_tests("sqlite://", tmp_path, CORS_ORIGINS=[origin]))
