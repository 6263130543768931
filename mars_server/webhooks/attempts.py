"""Recording a webhook attempt, and what its outcome does to the delivery and its endpoint.

Each attempt adds an entry to the delivery log and gives the delivery its new status. Only a
2xx answer is a success; a 410 disables the endpoint; anything else schedules the next
attempt on the Standard Webhooks schedule (``Retry-After`` on 429 and 503 is honoured) as a
job of its own, until :data:`MAX_ATTEMPTS`. An endpoint that has failed without a single
success for ``disable_after_days`` is disabled, and its owner told through the
``webhook.endpoint_disabled`` event. A delivery changes only while its series is current: a
redelivery may have started another meanwhile.

The statements of this hot path are built once (:func:`statements`) and address the tables,
not the mapped classes, so executing them skips the ORM.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server import metrics, operations
from mars_server.config import plugin_settings
from mars_server.db import db
from mars_server.events import enqueue
from mars_server.http import MarsError
from mars_server.http.problems import PROBLEM_TYPE_PREFIX
from mars_server.webhooks.events import endpoint_disabled
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

if TYPE_CHECKING:
    from mars_server.webhooks.transport import Outcome

# The logger docs/webhooks.md names for deliveries (see mars_server.webhooks.sending).
log = logging.getLogger("mars_server.webhooks.delivery")

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

#: The Standard Webhooks schedule after the first, immediate, attempt (the worker adds ±10%).
RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


@dataclass(frozen=True)
class Target:
    """A delivery as an attempt needs it, with its endpoint."""

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
    #: a redelivery's long-running operation, which ends with this series
    operation_id: str | None = None


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
                d.operation_id,
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


def load_targets(ids: list[str]) -> dict[str, Target]:
    """The deliveries ``ids`` that still exist, with their endpoints, by delivery id."""
    rows = db.session.execute(statements().load, {"ids": ids}).all()
    return {row[0]: Target(*tuple(row)) for row in rows}


def give_up(target: Target, error: str, now: dt.datetime) -> None:
    """The delivery failed without an attempt (its endpoint is disabled): ``error`` says why."""
    db.session.execute(
        statements().given_up,
        {"b_id": target.delivery_id, "b_series": target.series, "error": error, "now": now},
    )
    if target.operation_id is not None:
        operations.settle(target.operation_id, problem=DeliveryFailed(error))


def _said(outcome: Outcome) -> str:
    return f"HTTP {outcome.status}" if outcome.status is not None else outcome.error or "no answer"


class DeliveryFailed(MarsError):
    """A redelivery's operation, when its series of attempts failed."""

    status = 502
    type_ = PROBLEM_TYPE_PREFIX + "webhook-delivery-failed"
    title = "The endpoint did not accept the delivery."


def _settle(conn: sa.Connection, target: Target, number: int, problem: str | None) -> None:
    """A redelivery's operation, after attempt ``number``: ended (``problem`` None: it
    succeeded) or, with ``number`` of the most attempts made, under way."""
    if target.operation_id is None:
        return
    if problem is None:
        path = f"/api/v1/webhooks/{target.endpoint_id}/deliveries/{target.delivery_id}"
        operations.settle(target.operation_id, result=path, connection=conn)
    elif problem:
        operations.settle(target.operation_id, problem=DeliveryFailed(problem), connection=conn)
    else:
        operations.advance(target.operation_id, number / MAX_ATTEMPTS, connection=conn)


def next_attempt_delay(number: int, retry_after: float | None) -> float:
    """Seconds from attempt ``number`` of a series to the next: the Standard Webhooks
    schedule with ±10% jitter, and at least the receiver's ``Retry-After``."""
    delay = RETRY_DELAYS[number - 1] * random.uniform(0.9, 1.1)
    return max(delay, retry_after or 0.0)


def record(target: Target, number: int, outcome: Outcome, now: dt.datetime) -> bool:
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
        _settle(conn, target, number, None)
        if target.failing_since is not None:
            _update_endpoint(
                target,
                WebhookEndpoint.failing_since.is_not(None),
                failing_since=None,
            )
        return False
    if outcome.status == 410:  # Gone: the receiver asks for no more deliveries
        _attempted(conn, target, FAILED, now, outcome)
        _settle(conn, target, number, "The endpoint answered 410 Gone: MARS disabled it.")
        _disable(target, GONE, now)
        return True
    failing_since = target.failing_since
    if failing_since is None:
        failing_since = now
        _update_endpoint(target, WebhookEndpoint.failing_since.is_(None), failing_since=now)
    limit = dt.timedelta(days=plugin_settings("webhooks")["disable_after_days"])
    if now - failing_since > limit:
        _attempted(conn, target, FAILED, now, outcome)
        _settle(conn, target, number, "The endpoint failed for too long: MARS disabled it.")
        _disable(target, FAILING, now, failing_since)
        return True
    if number >= MAX_ATTEMPTS:
        _attempted(conn, target, FAILED, now, outcome)
        _settle(conn, target, number, f"Every attempt failed; the last: {_said(outcome)}.")
        return False
    _attempted(conn, target, PENDING, now, outcome)
    _settle(conn, target, number, "")
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
    conn: sa.Connection, target: Target, status: str, now: dt.datetime, outcome: Outcome
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


def _update_endpoint(target: Target, condition: Any, **values: Any) -> int:
    """Change the endpoint if ``condition`` still holds; a new version, so a new ETag."""
    result = db.session.execute(
        sa.update(WebhookEndpoint)
        .where(WebhookEndpoint.id == target.endpoint_id, condition)
        .values(version=WebhookEndpoint.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _disable(
    target: Target, reason: str, now: dt.datetime, failing_since: dt.datetime | None = None
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
    endpoint_disabled(
        endpoint_id=target.endpoint_id,
        url=target.url,
        owner_id=target.owner_id,
        reason=reason,
        failing_since=failing_since,
        disabled_at=now,
    )
