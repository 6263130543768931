"""MARS's own limits on a request's URL, header fields and body: problems, whatever the server.

The same limits under a real gunicorn, with the settings MARS ships, are in test_serving.py.
"""

from __future__ import annotations

import importlib
import io
import os
import socket

import pytest
import sqlalchemy as sa

from mars_server import create_app
from mars_server.config import ConfigError
from mars_server.testing import settings_for_tests, signed_in_client

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def count_projects(db) -> int:
    return db.session.scalar(sa.text("SELECT count(*) FROM projects"))


def test_url_over_the_limit_is_414(client):
    body = assert_problem(client.get("/api/v1/projects?q=" + "a" * 5000), 414)
    assert "4096 bytes" in body["detail"]
    assert_problem(client.get("/api/v1/" + "a" * 5000), 414)  # also where no route is
    # just under the limit, the request goes on (to the query's validation)
    assert client.get("/api/v1/projects?q=" + "a" * 4000).status_code == 422


def test_url_limit_is_a_setting(make_app):
    client = signed_in_client(make_app(MAX_URL_LENGTH=1024))
    assert_problem(client.get("/api/v1/projects?visibility=public&x=" + "a" * 1100), 414)


def test_a_header_field_over_the_limit_is_431(client):
    body = assert_problem(client.get("/api/v1/projects", headers={"X-Big": "a" * 9000}), 431)
    assert "X-Big" in body["detail"] and "8192 bytes" in body["detail"]
    assert client.get("/api/v1/projects", headers={"X-Big": "a" * 8000}).status_code == 200


def test_too_many_header_fields_is_431(client):
    many = {f"X-Field-{n}": "v" for n in range(120)}
    body = assert_problem(client.get("/api/v1/projects", headers=many), 431)
    assert "100 header fields" in body["detail"]


def test_header_limits_are_settings(make_app):
    client = signed_in_client(make_app(MAX_HEADER_FIELDS=20, MAX_HEADER_FIELD_SIZE=1024))
    assert_problem(client.get("/api/v1/projects", headers={"X-Big": "a" * 1100}), 431)
    many = {f"X-Field-{n}": "v" for n in range(25)}
    assert_problem(client.get("/api/v1/projects", headers=many), 431)


def test_a_control_character_in_a_header_is_400(client, db):
    """gunicorn refuses these itself; werkzeug's server (``mars serve``) passes them on."""
    response = client.post(
        "/api/v1/projects",
        json={"slug": "ctl", "name": "Ctl"},
        headers={"X-Note": "a\x01b"},
    )
    body = assert_problem(response, 400)
    assert "X-Note" in body["detail"]
    assert count_projects(db) == 0


def chunked_post(client, body: bytes, **kwargs):
    """A body sent without Content-Length, as a server that decodes chunked hands it on."""
    return client.post(
        "/api/v1/projects",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
        **kwargs,
    )


def test_chunked_body_over_the_limit_is_413(make_app, db):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    client = signed_in_client(app)
    big = b'{"slug": "big", "name": "Big", "description": "' + b"y" * 4096 + b'"}'
    body = assert_problem(chunked_post(client, big), 413)
    assert body["detail"] == "The request body is larger than this server accepts."
    # not cut at the limit either when the rest is only white space
    padded = b'{"slug": "padded", "name": "Padded"}' + b" " * 4096
    assert_problem(chunked_post(client, padded), 413)
    with app.app_context():
        assert count_projects(db) == 0


def test_chunked_body_within_the_limit_is_read_whole(make_app, db):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    client = signed_in_client(app)
    prefix = b'{"slug": "exact", "name": "Exact", "description": "'
    exact = prefix + b"y" * (2048 - len(prefix) - 2) + b'"}'
    assert len(exact) == 2048
    response = chunked_post(client, exact)
    assert response.status_code == 201, response.json
    assert len(response.json["description"]) == 2048 - len(prefix) - 2


class BrokenChunks(io.BytesIO):
    """``wsgi.input`` of a server that finds the chunks malformed as the app reads them
    (gunicorn raises its own ``InvalidChunkSize``)."""

    def read(self, size: int | None = -1) -> bytes:
        raise RuntimeError("Invalid chunk size: b'zz'")

    def readinto(self, buffer) -> int:
        raise RuntimeError("Invalid chunk size: b'zz'")


def test_malformed_chunked_body_is_400(client, db):
    response = client.post(
        "/api/v1/projects",
        input_stream=BrokenChunks(b"zz\r\n{}"),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    body = assert_problem(response, 400)
    assert body["detail"] == "The chunked request body is malformed."
    assert count_projects(db) == 0


def send_chunked(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST ``body`` chunked over a plain socket; return the status and the Content-Type."""
    host, port = base.removeprefix("http://").split(":")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, len(body), 1000)
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            f"{head}Connection: close\r\n\r\n".encode()
            + chunks
            + b"0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    content_type = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in rest.split(b"\r\n\r\n")[0].split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        ),
        "",
    )
    return int(status_line.split()[1]), content_type


@pytest.fixture
def app_config():
    return {"MAX_CONTENT_LENGTH": 2048}


def test_werkzeug_server_answers_a_chunked_body_over_the_limit_with_413(
    live_server, app, token_for, create_user
):
    """``mars serve``'s server (werkzeug's) decodes chunked bodies and hands them on."""
    headers = {
        "Authorization": f"Bearer {token_for(create_user(), ['projects:write'])}",
        "Content-Type": "application/json",
    }
    big = b'{"slug": "big", "name": "Big", "description": "' + b"y" * 4096 + b'"}'
    assert send_chunked(live_server, "/api/v1/projects", big, headers) == (413, PROBLEM)
    small = b'{"slug": "small", "name": "Small"}'
    assert send_chunked(live_server, "/api/v1/projects", small, headers)[0] == 201


def test_the_shipped_gunicorn_settings_sit_above_mars_limits(monkeypatch):
    """``gunicorn -c python:mars_server.ops.gunicorn_conf`` reads MARS's own settings."""
    for name in [name for name in os.environ if name.startswith("MARS_")]:
        monkeypatch.delenv(name)
    import mars_server.ops.gunicorn_conf as conf

    monkeypatch.setenv("MARS_MAX_HEADER_FIELDS", "150")
    monkeypatch.setenv("MARS_MAX_HEADER_FIELD_SIZE", "10000")
    conf = importlib.reload(conf)
    assert conf.limit_request_line == 8190  # gunicorn's cap; MARS_MAX_URL_LENGTH <= 8000
    assert conf.limit_request_fields == 300
    assert conf.limit_request_field_size == 20000
    assert conf.wsgi_app == "mars_server:create_app()"
    monkeypatch.setenv("MARS_MAX_HEADER_FIELD_SIZE", "not a number")  # create_app says so
    conf = importlib.reload(conf)
    assert conf.limit_request_field_size == 2 * 8192


@pytest.mark.parametrize(
    ("setting", "value"),
    [("MAX_URL_LENGTH", 8001), ("MAX_HEADER_FIELDS", 5), ("MAX_HEADER_FIELD_SIZE", 100)],
)
def test_limits_out_of_range_stop_start_up(tmp_path, setting, value):
    with pytest.raises(ConfigError, match=f"MARS_{setting}"):
        create_app(settings_for_tests("sqlite://", tmp_path, **{setting: value}))
