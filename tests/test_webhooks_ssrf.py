"""Webhooks cannot be pointed at MARS's own network: checked when an address is connected to.

A loopback "canary" server stands for what must stay unreachable; it must receive nothing.
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from mars_server.db import db
from mars_server.events import emit
from mars_server.testing import run_due_jobs, signed_in_client
from mars_server.webhooks import guard
from mars_server.webhooks.models import WebhookDelivery
from mars_server.webhooks.transport import Transport
from tests import webhook_fakes
from tests.webhook_receiver import Answer, Receiver

BODY = b'{"type": "thing.created"}'
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def canary():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def canary6():
    try:
        receiver = Receiver(ipv6=True)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield receiver
    receiver.close()


def strict() -> Transport:
    return Transport(allow_private=False, timeout=1.0, max_bytes=1024)


def lenient() -> Transport:
    return Transport(allow_private=True, timeout=1.0, max_bytes=1024)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "0.0.0.0",
        "::",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "100.64.0.1",
        "224.0.0.251",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:db8::1",
    ],
)
def test_internal_addresses_are_refused(address):
    assert guard.refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address):
    assert guard.refusal(ipaddress.ip_address(address)) is None


def test_every_internal_form_is_refused_at_connect_time(canary, canary6):
    port, port6 = canary.port, canary6.port
    for url in [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"https://localhost:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://2130706433:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::1]:{port6}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "file:///etc/passwd",
    ]:
        outcome = strict().post(url, BODY, HEADERS)
        assert outcome.status is None, url
        assert not outcome.ok
        assert outcome.error, url
        if url.startswith("http"):
            assert outcome.error.startswith("Refused:"), (url, outcome.error)
            assert "MARS_WEBHOOKS_ALLOW_PRIVATE" in outcome.error
    time.sleep(0.2)
    assert canary.requests == [] and canary6.requests == []
    # The canaries are up and reachable: only the guard kept the requests away.
    assert lenient().post(canary.url(), BODY, HEADERS).status == 200
    assert lenient().post(canary6.url(), BODY, HEADERS).status == 200


def test_a_host_name_is_checked_on_the_address_it_resolves_to(canary, monkeypatch):
    """The transport resolves once and connects to the very address it vetted: the answer
    cannot change between the check and the connection (DNS rebinding)."""
    real = socket.getaddrinfo
    lookups = []

    def resolve(host, *args, **kwargs):
        if host == "hooks.test":
            lookups.append(host)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    url = f"http://hooks.test:{canary.port}/hook"
    refused = strict().post(url, BODY, HEADERS)
    assert refused.error.startswith("Refused: hooks.test resolves to 127.0.0.1")
    assert canary.requests == []
    lookups.clear()
    allowed = lenient().post(url, BODY, HEADERS)
    assert allowed.status == 200
    assert lookups == ["hooks.test"], "one resolution, and the connection used it"
    assert canary.wait_for(1)[0].headers["host"] == f"hooks.test:{canary.port}"


def test_a_redirect_to_loopback_is_not_followed(canary):
    redirector = Receiver()
    try:
        redirector.answer("/hook", Answer(302, headers={"Location": canary.url("/stolen")}))
        outcome = lenient().post(redirector.url(), BODY, HEADERS)
        assert outcome.status == 302 and not outcome.ok
        assert "not followed" in outcome.error
        time.sleep(0.2)
        assert canary.requests == []
    finally:
        redirector.close()


def test_an_endpoint_made_while_allowed_is_refused_once_not(make_app, monkeypatch, canary):
    """A URL that passed the early check (or a setting that changed) is still refused at
    connect time: a name that resolves to loopback, delivered by a strict server."""
    webhook_fakes.install(monkeypatch)
    allowing = make_app(WEBHOOKS_ALLOW_PRIVATE=True)
    strict_app = make_app(WEBHOOKS_ALLOW_PRIVATE=False)
    with allowing.app_context():
        client = signed_in_client(allowing)
        created = client.post(
            "/api/v1/webhooks",
            json={"url": canary.url(host="localhost"), "events": [webhook_fakes.THING_CREATED]},
        )
        assert created.status_code == 201, created.json
        emit(webhook_fakes.THING_CREATED, {"id": "thing_1", "name": "secret plans"})
        db.session.commit()
    run_due_jobs(strict_app)
    time.sleep(0.2)
    assert canary.requests == []
    with strict_app.app_context():
        [delivery] = db.session.query(WebhookDelivery).all()
        assert delivery.status == "pending"
        assert delivery.response_status is None
        assert "loopback" in delivery.error and delivery.error.startswith("Refused:")
