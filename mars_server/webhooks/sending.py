"""The ``webhooks.deliver`` task: a job's planned attempts, made one after the other.

The fan-out handler (:mod:`mars_server.webhooks.handlers`) creates deliveries and enqueues
``webhooks.deliver`` jobs, each with a list of attempts to make now. A job makes them one
after the other through the app's :class:`~mars_server.webhooks.transport.Transport`, and
records each (:mod:`mars_server.webhooks.attempts`: its log entry, the delivery's new
status, the next attempt's job) in a transaction of its own as soon as it has the answer: a
worker killed mid-job repeats at most the one request it had in flight, and an attempt
already recorded is never made again. No connection is held while a request is in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from flask import current_app

from mars_server.crypto import InvalidToken, open_sealed
from mars_server.db import db, utcnow
from mars_server.events import enqueue
from mars_server.state import mars_state
from mars_server.webhooks.attempts import give_up, load_targets, record
from mars_server.webhooks.models import PENDING
from mars_server.webhooks.services import DELIVER_TASK
from mars_server.webhooks.signing import headers
from mars_server.webhooks.transport import Outcome, Transport

if TYPE_CHECKING:
    import datetime as dt

    from flask import Flask

    from mars_server.webhooks.attempts import Target

# The name docs/webhooks.md gives operators for this log, from when one module did all of a
# delivery's work: it stays, so that logging configured for it still applies.
log = logging.getLogger("mars_server.webhooks.delivery")

#: A job stops beginning attempts after this long, and hands the rest to a new job.
BATCH_SECONDS = 60.0
TRANSPORT_KEY = "mars.webhooks.transport"

_transport_lock = threading.Lock()


def transport() -> Transport:
    """The app's transport (one connection pool for every worker thread)."""
    found = current_app.extensions.get(TRANSPORT_KEY)
    if found is None:
        with _transport_lock:
            found = current_app.extensions.get(TRANSPORT_KEY)
            if found is None:
                found = current_app.extensions[TRANSPORT_KEY] = new_transport(current_app)
    return found


def new_transport(app: Flask) -> Transport:
    settings = mars_state(app).plugin_settings["webhooks"]
    mars = app.config["MARS"]
    return Transport(
        allow_private=mars["WEBHOOKS_ALLOW_PRIVATE"],
        timeout=settings["timeout_seconds"],
        max_bytes=settings["max_response_bytes"],
        maxsize=mars["WORKER_CONCURRENCY"],
    )


def _secrets(target: Target, now: dt.datetime) -> list[str] | None:
    """The endpoint's signing secrets now (two during a rotation); ``None``: unreadable."""
    sealed = [target.secret_sealed]
    if (
        target.previous_secret_sealed
        and target.previous_secret_expires_at
        and target.previous_secret_expires_at > now
    ):
        sealed.append(target.previous_secret_sealed)
    try:
        return [open_sealed(secret).decode() for secret in sealed]
    except InvalidToken:  # sealed under another MARS_SECRET_KEY
        return None


def deliver(attempts: list[dict[str, Any]]) -> None:
    """The ``webhooks.deliver`` task: make the planned ``attempts``, one after the other.

    Each is recorded and committed on its own. An attempt whose delivery is gone (deleted
    with its endpoint), done, superseded by a redelivery, or already made, is skipped.
    Past ``BATCH_SECONDS`` the attempts not begun go to a new job, so a slow receiver
    cannot hold a job past its lease.
    """
    targets = load_targets([planned["id"] for planned in attempts])
    db.session.rollback()  # nothing is written yet: hold no connection while sending
    started = time.monotonic()
    secrets_of: dict[str, list[str] | None] = {}
    disabled: set[str] = set()
    made = 0
    for index, planned in enumerate(attempts):
        target = targets.get(planned["id"])
        if (
            target is None
            or target.series != planned["series"]
            or target.status != PENDING
            or target.attempt_count != planned["made"]
        ):
            continue
        if made and time.monotonic() - started > BATCH_SECONDS:
            enqueue(DELIVER_TASK, attempts=attempts[index:])
            db.session.commit()
            return
        made += 1
        now = utcnow()
        if target.disabled or target.endpoint_id in disabled:
            give_up(target, "The endpoint is disabled.", now)
            db.session.commit()
            continue
        if target.endpoint_id not in secrets_of:
            secrets_of[target.endpoint_id] = _secrets(target, now)
        secrets = secrets_of[target.endpoint_id]
        if secrets is None:
            outcome = Outcome(None, 0, "The signing secret cannot be read: rotate it.")
        else:
            timestamp = int(time.time())
            outcome = transport().post(
                target.url,
                target.body.encode(),
                headers(target.delivery_id, timestamp, target.body, secrets),
            )
        if not outcome.ok:
            # What the delivery log shows; the URL is never logged (it may hold a token).
            log.warning(
                "webhook delivery %s to endpoint %s, attempt %d: %s (%d ms)",
                target.delivery_id,
                target.endpoint_id,
                planned["number"],
                outcome.error,
                outcome.duration_ms,
            )
        if record(target, planned["number"], outcome, utcnow()):
            disabled.add(target.endpoint_id)
        db.session.commit()
