"""Failed deliveries say what happened: DNS, refused, TLS, timeouts (issue 9, item 8).

Every case is a real server (or a real absence of one) on loopback, and the text is read where
the endpoint's owner reads it: the delivery log API. Names of this machine are refused when an
endpoint is created or changed, with the setting that allows them in development.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time

import pytest
import trustme

from mars_server.events import emit
from mars_server.testing import run_due_jobs, signed_in_client
from mars_server.webhooks import guard
from tests import webhook_fakes

BASE = "/api/v1/webhooks"
TIMEOUT = 0.5
HINT = "In development, MARS_WEBHOOKS_ALLOW_PRIVATE=true allows it."


@pytest.fixture
def delivering(make_app, monkeypatch):
    """An app that may deliver to loopback, with a short timeout."""
    yield from webhook_fakes.app_with_things(
        make_app,
        monkeypatch,
        WEBHOOKS_ALLOW_PRIVATE=True,
        PLUGINS={"webhooks": {"timeout_seconds": TIMEOUT}},
    )


@pytest.fixture
def strict(make_app, monkeypatch):
    """An app that refuses internal targets (the default)."""
    yield from webhook_fakes.app_with_things(make_app, monkeypatch)


def logged_attempt(app, url, caplog):
    """Subscribe ``url``, deliver one event, and return the delivery log's last attempt,
    the delivery's summary and what the worker logged about it."""
    from mars_server.db import db

    client = signed_in_client(app)
    created = client.post(BASE, json={"url": url, "events": [webhook_fakes.THING_CREATED]})
    assert created.status_code == 201, created.json
    emit(webhook_fakes.THING_CREATED, {"id": "thing_1", "name": "rover"})
    db.session.commit()
    caplog.set_level(logging.WARNING, logger="mars_server.webhooks.delivery")
    run_due_jobs(app)
    path = f"{BASE}/{created.json['id']}/deliveries"
    [summary] = client.get(path).json["items"]
    detail = client.get(f"{path}/{summary['id']}").json
    [attempt] = detail["attempts"]
    assert summary["error"] == attempt["error"]
    assert attempt["response_status"] is None and summary["status"] == "pending"
    [line] = [r.getMessage() for r in caplog.records if r.name == "mars_server.webhooks.delivery"]
    assert summary["id"] in line and attempt["error"] in line
    assert url not in line  # the host at most: a URL may hold a token
    return attempt


def free_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def silent_server(*, full: bool = False):
    """A port that never answers. ``full``: its backlog is full, so connecting never
    completes; else connections are accepted (by the kernel) and nothing is ever sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    if full:
        # Linux drops SYNs to a listener whose accept queue is full: connect() hangs.
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


@contextlib.contextmanager
def raw_server(handle):
    """A loopback server calling ``handle(connection)`` for each connection; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.settimeout(2)
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def tls_server():
    """An https server whose certificate no public authority signed (trustme's CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return raw_server(lambda conn: context.wrap_socket(conn, server_side=True).close())


def plain_http_server():
    """Answers whatever comes (a TLS ClientHello included) with a plain HTTP 400."""

    def answer(conn):
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    return raw_server(answer)


def read_request(conn):
    """Reads one whole HTTP request: its head, then the body its Content-Length names.

    Closing with unread bytes would make the kernel reset the connection instead of closing it.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def hanging_up_server():
    """Reads the request, then closes the connection without a word."""
    return raw_server(read_request)


# --- What the delivery log says -----------------------------------------------------------------


def test_a_refused_connection(delivering, caplog):
    port = free_port()
    attempt = logged_attempt(delivering, f"http://127.0.0.1:{port}/hook", caplog)
    assert (
        attempt["error"]
        == f"Connection refused: nothing accepts connections on 127.0.0.1 port {port}."
    )
    assert attempt["duration_ms"] < TIMEOUT * 1000


def test_a_name_that_does_not_resolve(delivering, caplog):
    # .invalid never resolves (RFC 6761), wherever the tests run.
    attempt = logged_attempt(delivering, "https://hooks.mars-tests.invalid/hook?token=x", caplog)
    assert attempt["error"].startswith(
        "DNS failure: hooks.mars-tests.invalid could not be resolved"
    )
    assert "token" not in attempt["error"]


def test_an_http_server_spoken_to_in_tls(delivering, caplog):
    with plain_http_server() as port:
        attempt = logged_attempt(delivering, f"https://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"].startswith(
        f"TLS failure: the handshake with 127.0.0.1 port {port} failed ("
    ), attempt["error"]


def test_a_certificate_no_authority_signed(delivering, caplog):
    with tls_server() as port:
        attempt = logged_attempt(delivering, f"https://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"].startswith(
        "TLS failure: the certificate of 127.0.0.1 was not accepted ("
    )
    assert "certificate" in attempt["error"].split("(", 1)[1], attempt["error"]


def test_a_server_that_never_answers(delivering, caplog):
    with silent_server() as port:
        attempt = logged_attempt(delivering, f"http://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"] == f"Read timeout: no answer from 127.0.0.1 port {port} within 0.5 s."
    assert TIMEOUT * 1000 <= attempt["duration_ms"] < (TIMEOUT + 1) * 1000


def test_a_server_that_never_shakes_hands(delivering, caplog):
    with silent_server() as port:
        attempt = logged_attempt(delivering, f"https://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"] == (
        f"TLS handshake timeout: 127.0.0.1 port {port} did not complete the handshake within 0.5 s."
    )


def test_a_server_that_never_accepts_the_connection(delivering, caplog):
    with silent_server(full=True) as port:
        attempt = logged_attempt(delivering, f"http://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"] == (
        f"Connect timeout: 127.0.0.1 port {port} did not accept a connection within 0.5 s."
    )
    assert TIMEOUT * 1000 <= attempt["duration_ms"] < (TIMEOUT + 1) * 1000


def test_a_server_that_hangs_up(delivering, caplog):
    with hanging_up_server() as port:
        attempt = logged_attempt(delivering, f"http://127.0.0.1:{port}/hook", caplog)
    assert attempt["error"] == (
        f"Connection failed: 127.0.0.1 port {port} closed the connection without answering."
    )


# --- Names of this machine are refused early ----------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost.",
        "LocalHost",
        "localhost.localdomain",
        "localhost.localdomain.",
        "hooks.localhost",
        "hooks.localhost.",
        "ip6-localhost",
        "ip6-loopback",
    ],
)
def test_names_of_this_machine_are_refused(strict, host):
    client = signed_in_client(strict)
    url = f"http://{host}:8080/hook"
    refused = client.post(BASE, json={"url": url, "events": [webhook_fakes.THING_CREATED]})
    assert refused.status_code == 422, refused.json
    [error] = refused.json["errors"]
    assert error["pointer"] == "/url"
    assert error["detail"] == (
        f"{host.lower()} is a name of this machine (a loopback address); webhooks may not "
        f"reach this network. {HINT}"
    )
    assert client.get(BASE).json["items"] == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://10.0.0.1/hook"]
)
def test_an_internal_address_is_refused_naming_the_setting(strict, url):
    client = signed_in_client(strict)
    refused = client.post(BASE, json={"url": url, "events": [webhook_fakes.THING_CREATED]})
    assert refused.status_code == 422
    assert refused.json["errors"][0]["detail"].endswith(HINT)


def test_a_name_resolving_to_loopback_is_refused_at_creation_and_change(strict, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.mars.test":
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    client = signed_in_client(strict)
    body = {"url": "https://hooks.mars.test/hook", "events": [webhook_fakes.THING_CREATED]}
    refused = client.post(BASE, json=body)
    assert refused.status_code == 422
    assert refused.json["errors"][0]["detail"] == (
        "hooks.mars.test resolves to an internal address (loopback, private, link-local or "
        f"reserved); webhooks may not reach this network. {HINT}"
    )
    assert "127.0.0.1" not in refused.json["errors"][0]["detail"]
    # A name that does not resolve (yet) is judged when delivering, not now.
    created = client.post(BASE, json=body | {"url": "https://hooks.mars-tests.invalid/"})
    assert created.status_code == 201, created.json
    path = f"{BASE}/{created.json['id']}"
    changed = client.patch(
        path, json={"url": body["url"]}, headers={"If-Match": created.headers["ETag"]}
    )
    assert changed.status_code == 422
    assert "resolves to an internal address" in changed.json["errors"][0]["detail"]
    assert client.get(path).json["url"] == "https://hooks.mars-tests.invalid/"


def test_a_slow_resolver_does_not_hold_the_request(strict, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "slow.mars.test":
            time.sleep(3)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(guard, "RESOLVE_SECONDS", 0.2)
    client = signed_in_client(strict)
    started = time.monotonic()
    created = client.post(
        BASE, json={"url": "https://slow.mars.test/", "events": [webhook_fakes.THING_CREATED]}
    )
    assert created.status_code == 201, created.json
    assert time.monotonic() - started < 2


def test_names_of_this_machine_are_allowed_when_the_server_allows_them(delivering):
    client = signed_in_client(delivering)
    created = client.post(
        BASE,
        json={"url": "http://localhost.localdomain:8080/", "events": [webhook_fakes.THING_CREATED]},
    )
    assert created.status_code == 201, created.json
