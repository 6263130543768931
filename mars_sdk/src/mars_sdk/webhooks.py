"""Verify the webhooks MARS sends: Standard Webhooks signatures (HMAC-SHA256).

::

    from mars_sdk.webhooks import WebhookVerificationError, verify

    try:
        event = verify(request_body, request_headers, secret=WEBHOOK_SECRET)
    except WebhookVerificationError:
        ...  # answer 400, do nothing

Verify the body exactly as it arrived, before parsing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - not a secret
#: Messages signed longer ago than this, or as far ahead of the clock, are refused (replays).
TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The message is not from MARS, was changed, or is too old (or too new) to trust."""


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of a message: what MARS sends in ``webhook-signature``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """Check a webhook's signature and timestamp; return its parsed JSON body.

    :param body: the request body, exactly as received.
    :param headers: the request headers (names in any case).
    :param secret: the endpoint's secret (``whsec_...``), or several: during a rotation,
        MARS signs with the old and the new secret, and one match is enough, so a receiver
        may hold either or both.
    :param tolerance: how many seconds the ``webhook-timestamp`` may differ from ``now``.
    :raises WebhookVerificationError: a header is missing, the timestamp is out of
        tolerance, or no signature matches.
    """
    raw = body.encode() if isinstance(body, str) else body
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or -signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("the message is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("the message's timestamp is in the future")
    offered = [s.removeprefix("v1,") for s in signatures.split() if s.startswith("v1,")]
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for candidate in secrets:
        expected = sign(candidate, message_id, timestamp, raw).removeprefix("v1,")
        # Compare against every offered signature (no early exit on the first match).
        if any([hmac.compare_digest(expected, signature) for signature in offered]):
            return json.loads(raw)
    raise WebhookVerificationError("no signature matches the secret")
