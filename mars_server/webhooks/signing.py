"""Standard Webhooks (https://www.standardwebhooks.com): secrets, bodies and signatures.

A secret is ``whsec_`` and the base64 of 32 random bytes; the signature of a delivery is
``v1,`` and the base64 of HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}`` keyed
with the decoded bytes. With two secrets active (after a rotation), ``webhook-signature``
lists both signatures, separated by a space.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from typing import TYPE_CHECKING

from mars_server import __version__

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mars_server.events import Event

PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = f"MARS-Webhooks/{__version__}"


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def key_of(secret: str) -> bytes:
    """The HMAC key a secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(message_id: str, timestamp: int, body: str, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<signature>`` per secret, space-separated."""
    content = f"{message_id}.{timestamp}.{body}".encode()
    return " ".join(
        "v1,"
        + base64.b64encode(hmac.new(key_of(secret), content, hashlib.sha256).digest()).decode()
        for secret in secrets
    )


def body_of(event: Event) -> str:
    """The JSON body every subscriber of ``event`` receives."""
    occurred = event.occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    document = {"id": event.id, "type": event.type, "timestamp": occurred, "data": event.payload}
    return json.dumps(document, separators=(",", ":"))


def headers(message_id: str, timestamp: int, body: str, secrets: Iterable[str]) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(message_id, timestamp, body, secrets),
    }
