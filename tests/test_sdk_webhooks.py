"""``mars_sdk.webhooks.verify``: the Standard Webhooks test vectors, and real deliveries."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as LibraryError

from mars_sdk.events import parse_event
from mars_sdk.models import WebhookProjectCreated
from mars_sdk.webhooks import WebhookVerificationError, sign, verify
from mars_server.testing import run_due_jobs

pytest_plugins = ["tests.sdk.fixtures"]

# The test vector of the Standard Webhooks specification and its reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(**overrides):
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    } | overrides


def test_the_specifications_vector_verifies():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    payload = verify(VECTOR_BODY, vector_headers(), VECTOR_SECRET, now=VECTOR_TIMESTAMP)
    assert payload == {"test": 2432232314}
    upper = {k.upper(): v for k, v in vector_headers().items()}  # header names in any case
    assert verify(VECTOR_BODY.decode(), upper, VECTOR_SECRET, now=VECTOR_TIMESTAMP + 299)


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now"),
    [
        pytest.param(b'{"test": 2432232315}', {}, VECTOR_SECRET, 0, id="body changed"),
        pytest.param(VECTOR_BODY, {"webhook-id": "msg_other"}, VECTOR_SECRET, 0, id="id changed"),
        pytest.param(
            VECTOR_BODY,
            {"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)},
            VECTOR_SECRET,
            0,
            id="timestamp changed",
        ),
        pytest.param(
            VECTOR_BODY, {}, "whsec_" + base64.b64encode(b"x" * 24).decode(), 0, id="another secret"
        ),
        pytest.param(VECTOR_BODY, {}, VECTOR_SECRET, 301, id="too old"),
        pytest.param(VECTOR_BODY, {}, VECTOR_SECRET, -301, id="from the future"),
        pytest.param(
            VECTOR_BODY,
            {"webhook-signature": "v2," + VECTOR_SIGNATURE[3:]},
            VECTOR_SECRET,
            0,
            id="unknown version",
        ),
        pytest.param(VECTOR_BODY, {"webhook-signature": ""}, VECTOR_SECRET, 0, id="no signature"),
        pytest.param(
            VECTOR_BODY, {"webhook-timestamp": "soon"}, VECTOR_SECRET, 0, id="bad timestamp"
        ),
    ],
)
def test_what_is_refused(body, headers, secret, now):
    with pytest.raises(WebhookVerificationError):
        verify(body, vector_headers(**headers), secret, now=VECTOR_TIMESTAMP + now)


def test_one_matching_signature_of_several_is_enough():
    other = sign("whsec_" + base64.b64encode(b"y" * 24).decode(), VECTOR_ID, 1, b"")
    headers = vector_headers(**{"webhook-signature": f"{other} {VECTOR_SIGNATURE}"})
    assert verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP)


def test_agrees_with_the_standardwebhooks_library_both_ways():
    for _ in range(20):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        body = json.dumps({"id": secrets.token_hex(8), "data": {"n": secrets.randbelow(9)}})
        now = int(time.time())
        library = Webhook(secret)
        theirs = library.sign("msg_1", datetime.fromtimestamp(now, UTC), body)
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now)}
        assert verify(body.encode(), headers | {"webhook-signature": theirs}, secret)
        ours = sign(secret, "msg_1", now, body.encode())
        assert library.verify(body, headers | {"webhook-signature": ours}) == json.loads(body)
        tampered = headers | {"webhook-signature": ours[:-4] + "AAA="}
        with pytest.raises(LibraryError):
            library.verify(body, tampered)
        with pytest.raises(WebhookVerificationError):
            verify(body, tampered, secret)


def test_a_malformed_secret_is_a_value_error():
    with pytest.raises(ValueError, match="whsec_"):
        verify(VECTOR_BODY, vector_headers(), "whsec_not base64!", now=VECTOR_TIMESTAMP)


# -- real deliveries from MARS ---------------------------------------------------------------


@pytest.fixture
def app_config():
    return {"WEBHOOKS_ALLOW_PRIVATE": True}


def test_real_deliveries_verify_across_a_secret_rotation(app, sdk, receiver):
    client = sdk()
    endpoint = client.webhooks.create(url=receiver.url(), events=["project.created"])
    old = endpoint.secret

    project = client.projects.create(slug="first", name="First")
    run_due_jobs(app)
    [first] = receiver.wait_for(1)
    payload = verify(first.body, first.headers, old)
    assert payload["type"] == "project.created" and payload["data"]["id"] == project.id
    event = parse_event(payload)
    assert isinstance(event, WebhookProjectCreated)
    assert (event.data.slug, event.type) == ("first", "project.created")
    assert event.timestamp.tzinfo is not None
    assert Webhook(old).verify(first.body, first.headers) == payload  # the cross-check

    new = client.webhooks.rotate_secret(webhook_id=endpoint.id).secret
    client.projects.create(slug="second", name="Second")
    run_due_jobs(app)
    second = receiver.wait_for(2)[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 2  # one per secret
    for secret in (old, new, [old, new], [new]):
        assert verify(second.body, second.headers, secret)["data"]["slug"] == "second"
    with pytest.raises(WebhookVerificationError):  # the first message was never signed by new
        verify(first.body, first.headers, new)
    with pytest.raises(WebhookVerificationError):
        verify(second.body.replace(b"second", b"sec0nd"), second.headers, [old, new])
    stamp = int(second.headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError, match="too old"):  # a replay, later
        verify(second.body, second.headers, new, now=stamp + 301)


def test_parse_event_refuses_unknown_types():
    with pytest.raises(ValueError, match="unknown event type"):
        parse_event({"type": "thing.happened", "data": {}})
