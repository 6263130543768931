"""From committed events to signed HTTP requests: the fan-out handler and the delivery task.

- ``webhooks.fan_out`` (an event handler on every event) creates one delivery per enabled
  endpoint subscribed to the event's type whose owner is active and may see the event, and
  enqueues one ``webhooks.deliver`` job for it. The unique (event, endpoint) pair makes a
  second run of the handler create nothing.
- ``webhooks.deliver`` makes one attempt per job run. Only a 2xx answer is a success; a 410
  disables the endpoint; anything else is retried on the Standard Webhooks schedule
  (``Retry-After`` on 429 and 503 is honoured), each attempt logged. An endpoint that has
  failed without a single success for ``disable_after_days`` is disabled, and its owner
  told through the ``webhook.endpoint_disabled`` event.

Per delivery the database sees one read (the delivery with its endpoint), then one insert and
one or two updates, committed with the job's completion. No connection is held while the
request is in flight.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app

from mars_server.config import plugin_settings
from mars_server.crypto import InvalidToken, open_sealed
from mars_server.db import db, new_id, utcnow
from mars_server.events import Retry, current_job, emit, enqueue
from mars_server.hookspecs import EventHandler, EventType, NotificationDraft, Task
from mars_server.http import user_info
from mars_server.webhooks.models import (
    FAILED,
    FAILING,
    GONE,
    PENDING,
    SUCCEEDED,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from mars_server.webhooks.services import DELIVER_TASK
from mars_server.webhooks.signing import body_of, headers
from mars_server.webhooks.transport import Outcome, Transport

if TYPE_CHECKING:
    from flask import Flask

    from mars_server.events import Event

log = logging.getLogger(__name__)

FAN_OUT = "webhooks.fan_out"
PURGE_TASK = "webhooks.purge"
ENDPOINT_DISABLED = "webhook.endpoint_disabled"
#: The Standard Webhooks schedule after the first, immediate, attempt (the worker adds ±10%).
RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
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
    failing_since = ma.fields.AwareDateTime(allow_none=True, format="iso")
    disabled_at = ma.fields.AwareDateTime(required=True, format="iso")


EVENT_TYPES = [
    EventType(
        ENDPOINT_DISABLED,
        "One of your webhook endpoints was disabled: it answered 410 Gone, or kept failing.",
        EndpointDisabledSchema,
    )
]


# --- Fan-out ------------------------------------------------------------------------------------


def fan_out(event: Event) -> None:
    """Create the deliveries of ``event`` and their jobs (idempotent by event id)."""
    candidates = db.session.execute(
        sa.select(WebhookEndpoint.id, WebhookEndpoint.owner_id)
        .join(WebhookSubscription, WebhookSubscription.endpoint_id == WebhookEndpoint.id)
        .where(
            WebhookSubscription.event_type == event.type,
            WebhookEndpoint.disabled.is_(False),
        )
    ).all()
    if not candidates:
        return
    done = set(
        db.session.scalars(
            sa.select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == event.id)
        )
    )
    active: dict[str, bool] = {}
    body: str | None = None
    for endpoint_id, owner_id in candidates:
        if endpoint_id in done or not event.visible_to(owner_id):
            continue
        if owner_id not in active:
            info = user_info(owner_id)
            active[owner_id] = info is not None and info.active
        if not active[owner_id]:
            continue
        body = body or body_of(event)
        delivery_id = new_id("msg")
        db.session.add(
            WebhookDelivery(
                id=delivery_id,
                endpoint_id=endpoint_id,
                event_id=event.id,
                event_type=event.type,
                body=body,
            )
        )
        key = f"{DELIVER_TASK}:{delivery_id}:1"
        enqueue(DELIVER_TASK, key=key, delivery_id=delivery_id, series=1)


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
    settings = app.extensions["mars"].plugin_settings["webhooks"]
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
            .where(d.id == sa.bindparam("delivery_id"))
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


def _load(delivery_id: str) -> _Target | None:
    row = db.session.execute(statements().load, {"delivery_id": delivery_id}).one_or_none()
    if row is None:
        return None
    values: tuple[Any, ...] = tuple(row)
    return _Target(*values)


def deliver(delivery_id: str, series: int = 1) -> None:
    """The ``webhooks.deliver`` task: one attempt of one delivery."""
    target = _load(delivery_id)
    if target is None or target.series != series or target.status != PENDING:
        return  # deleted with its endpoint, superseded by a redelivery, or already done
    now = utcnow()
    if target.disabled:
        db.session.execute(
            statements().given_up,
            {
                "b_id": target.delivery_id,
                "b_series": target.series,
                "error": "The endpoint is disabled.",
                "now": now,
            },
        )
        return
    sealed = [target.secret_sealed]
    if (
        target.previous_secret_sealed
        and target.previous_secret_expires_at
        and target.previous_secret_expires_at > now
    ):
        sealed.append(target.previous_secret_sealed)
    # Nothing is written yet: end the read so no connection waits on the network.
    db.session.rollback()

    try:
        secrets = [open_sealed(secret).decode() for secret in sealed]
    except InvalidToken:
        # Sealed under another MARS_SECRET_KEY: nothing can be signed until a rotation.
        outcome = Outcome(None, 0, "The signing secret cannot be read: rotate it.")
    else:
        timestamp = int(time.time())
        outcome = transport().post(
            target.url,
            target.body.encode(),
            headers(target.delivery_id, timestamp, target.body, secrets),
        )
    _record(target, outcome, utcnow())


def _record(target: _Target, outcome: Outcome, now: dt.datetime) -> None:
    db.session.execute(
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
        _attempted(target, SUCCEEDED, now, outcome)
        if target.failing_since is not None:
            _update_endpoint(
                target,
                WebhookEndpoint.failing_since.is_not(None),
                failing_since=None,
            )
        return
    if outcome.status == 410:  # Gone: the receiver asks for no more deliveries
        _attempted(target, FAILED, now, outcome)
        _disable(target, GONE, now)
        return
    failing_since = target.failing_since
    if failing_since is None:
        failing_since = now
        _update_endpoint(target, WebhookEndpoint.failing_since.is_(None), failing_since=now)
    limit = dt.timedelta(days=plugin_settings("webhooks")["disable_after_days"])
    if now - failing_since > limit:
        _attempted(target, FAILED, now, outcome)
        _disable(target, FAILING, now, failing_since)
        return
    job = current_job()
    if job is None or job.is_last_attempt:
        _attempted(target, FAILED, now, outcome)
        return
    _attempted(target, PENDING, now, outcome)
    # Retry keeps what this attempt wrote (its log) and takes the next delay of the schedule.
    raise Retry(outcome.error or "failed", after=outcome.retry_after)


def _attempted(target: _Target, status: str, now: dt.datetime, outcome: Outcome) -> None:
    """The delivery after an attempt: its new status and the attempt's result.

    Only if its series is still current: a redelivery may have started another meanwhile.
    """
    db.session.execute(
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


HANDLERS = [EventHandler(FAN_OUT, ("*",), fan_out)]
TASKS = [
    Task(
        DELIVER_TASK,
        deliver,
        max_attempts=MAX_ATTEMPTS,
        retry_delays=RETRY_DELAYS,
        # The lease: far above the longest attempt (timeout_seconds is at most 60).
        timeout=180.0,
    ),
    Task(PURGE_TASK, purge, max_attempts=3),
]
