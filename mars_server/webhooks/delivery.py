"""From committed events to signed HTTP requests: the delivery task.

The ``webhooks.fan_out`` handler (:mod:`mars_server.webhooks.fanout`) creates deliveries
and enqueues ``webhooks.deliver`` jobs, each with a list of attempts to make now. A job
makes them one after the other, and records each (its log entry, the delivery's new
status, the next attempt's job) in a transaction of its own as soon as it has the answer:
a worker killed mid-job repeats at most the one request it had in flight, and an attempt
already recorded is never made again.

Only a 2xx answer is a success; a 410 disables the endpoint; anything else schedules the
next attempt on the Standard Webhooks schedule (``Retry-After`` on 429 and 503 is
honoured) as a job of its own. An endpoint that has failed without a single success for
``disable_after_days`` is disabled, and its owner told through the
``webhook.endpoint_disabled`` event. No connection is held while a request is in flight.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app

from mars_server import metrics
from mars_server.config import plugin_settings
from mars_server.crypto import InvalidToken, open_sealed
from mars_server.db import db, utcnow
from mars_server.events import emit, enqueue
from mars_server.hookspecs import EventHandler, EventType, NotificationDraft, Task
from mars_server.state import mars_state
from mars_server.webhooks.fanout import FAN_OUT, fan_out, fan_out_many
from mars_server.webhooks.models import (
    FAILED,
    FAILING,
    GONE,
    PENDING,
    SUCCEEDED,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from mars_server.webhooks.services import DELIVER_TASK, planned_attempt
from mars_server.webhooks.signing import headers
from mars_server.webhooks.transport import Outcome, Transport

if TYPE_CHECKING:
    from flask import Flask

    from mars_server.events import Event

log = logging.getLogger(__name__)

#: ``outcome``: ``success`` (a 2xx answer), ``failure`` (another answer), ``error`` (none: the
#: connection failed or timed out, the address is refused, the secret cannot be read).
DELIVERY_ATTEMPTS = metrics.counter(
    "mars_webhook_deliveries_total", "Webhook delivery attempts made, by outcome.", ("outcome",)
)
DELIVERY_DURATION = metrics.histogram(
    "mars_webhook_delivery_duration_seconds",
    "How long a webhook delivery attempt took, until the answer or the error, by outcome.",
    ("outcome",),
)

PURGE_TASK = "webhooks.purge"
ENDPOINT_DISABLED = "webhook.endpoint_disabled"
#: The Standard Webhooks schedule after the first, immediate, attempt (the worker adds ±10%).
RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
#: A job stops beginning attempts after this long, and hands the rest to a new job.
BATCH_SECONDS = 60.0
TRANSPORT_KEY = "mars.webhooks.transport"


class EndpointDisabledSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(required=True, metadata={"description": "The endpoint's id."})
    url = ma.fields.String(required=True)
    reason = ma.fields.String(
        required=True,
        metadata={
            "enum": [GONE, FAILING],
            "description": "`gone`: it answered 410 Gone; `failing`: no delivery succeeded "
            "for longer than the server allows.",
        },
    )
    failing_since = ma.fields.AwareDateTime(required=True, allow_none=True, format="iso")
    disabled_at = ma.fields.AwareDateTime(required=True, format="iso")


EVENT_TYPES = [
    EventType(
        ENDPOINT_DISABLED,
        "One of your webhook endpoints was disabled: it answered 410 Gone, or kept failing.",
        EndpointDisabledSchema,
        "webhooks:read",
    )
]


# --- Delivery -----------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Target:
    delivery_id: str
    series: int
    status: str
    attempt_count: int
    body: str
    endpoint_id: str
    owner_id: str
    url: str
    disabled: bool
    failing_since: dt.datetime | None
    secret_sealed: str
    previous_secret_sealed: str | None
    previous_secret_expires_at: dt.datetime | None


class _Statements:
    """The statements of the hot path, built once: per delivery only parameters change.

    They address the tables, not the mapped classes, so executing them skips the ORM.
    """

    def __init__(self) -> None:
        deliveries = cast("sa.Table", WebhookDelivery.__table__)
        endpoints = cast("sa.Table", WebhookEndpoint.__table__)
        attempts = cast("sa.Table", WebhookAttempt.__table__)
        d, e = deliveries.c, endpoints.c
        self.load = (
            sa.select(
                d.id,
                d.series,
                d.status,
                d.attempt_count,
                d.body,
                e.id,
                e.owner_id,
                e.url,
                e.disabled,
                e.failing_since,
                e.secret_sealed,
                e.previous_secret_sealed,
                e.previous_secret_expires_at,
            )
            .join_from(deliveries, endpoints, e.id == d.endpoint_id)
            .where(d.id.in_(sa.bindparam("ids", expanding=True)))
        )
        self.add_attempt = attempts.insert()
        this_series = (d.id == sa.bindparam("b_id")) & (d.series == sa.bindparam("b_series"))
        self.attempted = (
            deliveries.update()
            .where(this_series)
            .values(
                status=sa.bindparam("status"),
                attempt_count=d.attempt_count + 1,
                last_attempt_at=sa.bindparam("last_attempt_at"),
                response_status=sa.bindparam("response_status"),
                duration_ms=sa.bindparam("duration_ms"),
                error=sa.bindparam("error"),
                completed_at=sa.bindparam("completed_at"),
            )
        )
        self.given_up = (
            deliveries.update()
            .where(this_series)
            .values(status=FAILED, error=sa.bindparam("error"), completed_at=sa.bindparam("now"))
        )


_statements: _Statements | None = None


def statements() -> _Statements:
    global _statements
    if _statements is None:
        _statements = _Statements()
    return _statements


def _load(ids: list[str]) -> dict[str, _Target]:
    rows = db.session.execute(statements().load, {"ids": ids}).all()
    return {row[0]: _Target(*tuple(row)) for row in rows}


def _secrets(target: _Target, now: dt.datetime) -> list[str] | None:
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
    targets = _load([planned["id"] for planned in attempts])
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
            _give_up(target, "The endpoint is disabled.", now)
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
        if _record(target, planned["number"], outcome, utcnow()):
            disabled.add(target.endpoint_id)
        db.session.commit()


def _give_up(target: _Target, error: str, now: dt.datetime) -> None:
    db.session.execute(
        statements().given_up,
        {"b_id": target.delivery_id, "b_series": target.series, "error": error, "now": now},
    )


def next_attempt_delay(number: int, retry_after: float | None) -> float:
    """Seconds from attempt ``number`` of a series to the next: the Standard Webhooks
    schedule with ±10% jitter, and at least the receiver's ``Retry-After``."""
    delay = RETRY_DELAYS[number - 1] * random.uniform(0.9, 1.1)
    return max(delay, retry_after or 0.0)


def _record(target: _Target, number: int, outcome: Outcome, now: dt.datetime) -> bool:
    """Log an attempt and act on its outcome; whether it disabled the endpoint."""
    kind = "success" if outcome.ok else "error" if outcome.status is None else "failure"
    DELIVERY_ATTEMPTS.labels(kind).inc()
    DELIVERY_DURATION.labels(kind).observe(outcome.duration_ms / 1000)
    # The session's connection, without the ORM's per-statement work: these statements
    # touch no mapped object.
    conn = db.session.connection()
    conn.execute(
        statements().add_attempt,
        {
            "delivery_id": target.delivery_id,
            "series": target.series,
            "attempted_at": now,
            "response_status": outcome.status,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
            "response_body": outcome.body,
        },
    )
    if outcome.ok:
        _attempted(conn, target, SUCCEEDED, now, outcome)
        if target.failing_since is not None:
            _update_endpoint(
                target,
                WebhookEndpoint.failing_since.is_not(None),
                failing_since=None,
            )
        return False
    if outcome.status == 410:  # Gone: the receiver asks for no more deliveries
        _attempted(conn, target, FAILED, now, outcome)
        _disable(target, GONE, now)
        return True
    failing_since = target.failing_since
    if failing_since is None:
        failing_since = now
        _update_endpoint(target, WebhookEndpoint.failing_since.is_(None), failing_since=now)
    limit = dt.timedelta(days=plugin_settings("webhooks")["disable_after_days"])
    if now - failing_since > limit:
        _attempted(conn, target, FAILED, now, outcome)
        _disable(target, FAILING, now, failing_since)
        return True
    if number >= MAX_ATTEMPTS:
        _attempted(conn, target, FAILED, now, outcome)
        return False
    _attempted(conn, target, PENDING, now, outcome)
    delay = next_attempt_delay(number, outcome.retry_after)
    enqueue(
        DELIVER_TASK,
        run_at=now + dt.timedelta(seconds=delay),
        attempts=[
            planned_attempt(
                target.delivery_id,
                series=target.series,
                made=target.attempt_count + 1,
                number=number + 1,
            )
        ],
    )
    return False


def _attempted(
    conn: sa.Connection, target: _Target, status: str, now: dt.datetime, outcome: Outcome
) -> None:
    """The delivery after an attempt: its new status and the attempt's result.

    Only if its series is still current: a redelivery may have started another meanwhile.
    """
    conn.execute(
        statements().attempted,
        {
            "b_id": target.delivery_id,
            "b_series": target.series,
            "status": status,
            "last_attempt_at": now,
            "response_status": outcome.status,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
            "completed_at": None if status == PENDING else now,
        },
    )


def _update_endpoint(target: _Target, condition: Any, **values: Any) -> int:
    """Change the endpoint if ``condition`` still holds; a new version, so a new ETag."""
    result = db.session.execute(
        sa.update(WebhookEndpoint)
        .where(WebhookEndpoint.id == target.endpoint_id, condition)
        .values(version=WebhookEndpoint.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _disable(
    target: _Target, reason: str, now: dt.datetime, failing_since: dt.datetime | None = None
) -> None:
    changed = _update_endpoint(
        target,
        WebhookEndpoint.disabled.is_(False),
        disabled=True,
        disabled_reason=reason,
        disabled_at=now,
    )
    if not changed:  # another delivery's attempt disabled it first, and told the owner
        return
    log.warning("webhook endpoint %s disabled (%s)", target.endpoint_id, reason)
    emit(
        ENDPOINT_DISABLED,
        {
            "id": target.endpoint_id,
            "url": target.url,
            "reason": reason,
            "failing_since": failing_since,
            "disabled_at": now,
        },
        audience=[target.owner_id],
        target=target.endpoint_id,
    )


# --- Notifications and upkeep -------------------------------------------------------------------


def notifications(event: Event) -> list[NotificationDraft]:
    """Tell an endpoint's owner it was disabled."""
    if event.type != ENDPOINT_DISABLED:
        return []
    payload = event.payload
    if payload.get("reason") == GONE:
        body = (
            f"{payload['url']} answered 410 Gone, so MARS stopped sending it events. "
            "Enable the endpoint again once it accepts deliveries."
        )
    else:
        body = (
            f"Every delivery to {payload['url']} has failed since {payload.get('failing_since')}, "
            "so MARS stopped sending it events. Fix the receiver, then enable the endpoint "
            "again and redeliver what it missed from its delivery log."
        )
    return [
        NotificationDraft(
            user_id=user_id,
            title="A webhook endpoint was disabled",
            body=body,
            link=f"/api/v1/webhooks/{payload['id']}",
        )
        for user_id in event.audience or ()
    ]


def purge() -> None:
    """The ``webhooks.purge`` task: forget finished deliveries older than the retention."""
    days = plugin_settings("webhooks")["log_retention_days"]
    cutoff = utcnow() - dt.timedelta(days=days)
    old = sa.select(WebhookDelivery.id).where(
        WebhookDelivery.created_at < cutoff, WebhookDelivery.status != PENDING
    )
    db.session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old)))
    result = db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))
    log.info("webhooks: purged %d old deliveries", result.rowcount)  # type: ignore[attr-defined]


HANDLERS = [EventHandler(FAN_OUT, ("*",), fan_out, handle_many=fan_out_many, batch=500)]
TASKS = [
    Task(
        DELIVER_TASK,
        deliver,
        # Failed requests are retried by the delivery's own schedule, each a job of its
        # own; these are for a job that failed itself (the database went away).
        max_attempts=5,
        # The lease: a job begins no attempt after BATCH_SECONDS, and one attempt lasts
        # at most timeout_seconds (itself at most 15).
        timeout=BATCH_SECONDS + 120.0,
    ),
    Task(PURGE_TASK, purge, max_attempts=3),
]
