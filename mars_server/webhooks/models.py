"""Webhook endpoints, their subscriptions, deliveries and delivery attempts.

``owner_id`` is a user's public id, not a foreign key: the webhooks plugin keeps no link to
the auth plugin's tables (it asks the ``mars_user_info`` hook instead).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mars_server.db import Model, Timestamped, Versioned, new_id, utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable

#: A delivery waiting for its next attempt, or its first.
PENDING = "pending"
SUCCEEDED = "succeeded"
#: Every attempt of its series failed, or the endpoint went away (410) or was disabled.
FAILED = "failed"
DELIVERY_STATUSES = (PENDING, SUCCEEDED, FAILED)

#: Why an endpoint is disabled: its owner said so, it answered 410 Gone, or it kept failing.
BY_OWNER, GONE, FAILING = "by_owner", "gone", "failing"
DISABLED_REASONS = (BY_OWNER, GONE, FAILING)


class WebhookEndpoint(Timestamped, Versioned, Model):
    """A URL that receives signed deliveries of the events its owner subscribed to.

    The signing secret is sealed (:func:`mars_server.crypto.seal`): MARS must read it back to
    sign, so it cannot be hashed. After a rotation the previous one stays until
    ``previous_secret_expires_at`` and deliveries carry both signatures.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        sa.CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('by_owner', 'gone', 'failing')",
            name="disabled_reason",
        ),
        sa.Index("ix_webhook_endpoints_owner_id_id", "owner_id", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("whk"))
    owner_id: Mapped[str] = mapped_column(sa.String(40), info={"user_id": True})
    url: Mapped[str] = mapped_column(sa.String(2048))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    disabled: Mapped[bool] = mapped_column(default=False)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(16))
    disabled_at: Mapped[dt.datetime | None]
    #: Since when every attempt has failed; cleared by any success.
    failing_since: Mapped[dt.datetime | None]
    secret_sealed: Mapped[str] = mapped_column(sa.Text, info={"sealed": True})
    previous_secret_sealed: Mapped[str | None] = mapped_column(sa.Text, info={"sealed": True})
    previous_secret_expires_at: Mapped[dt.datetime | None]

    subscriptions: Mapped[list[WebhookSubscription]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="WebhookSubscription.event_type",
        passive_deletes=True,
    )

    @property
    def events(self) -> list[str]:
        """The event types it receives, by name."""
        return [subscription.event_type for subscription in self.subscriptions]

    @events.setter
    def events(self, names: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(names))
        # Keep the rows of types still wanted: deleting and re-adding one primary key in
        # one flush would collide.
        kept = [s for s in self.subscriptions if s.event_type in wanted]
        have = {s.event_type for s in kept}
        added = [WebhookSubscription(event_type=name) for name in wanted if name not in have]
        self.subscriptions = sorted(kept + added, key=lambda s: s.event_type)


class WebhookSubscription(Model):
    """One event type an endpoint receives; the fan-out finds endpoints by type here."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (sa.Index("ix_webhook_subscriptions_event_type", "event_type"),)

    endpoint_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(100), primary_key=True)


class WebhookDelivery(Model):
    """One event for one endpoint: its id is the ``webhook-id`` header, the same on every
    attempt and redelivery, so receivers can drop duplicates.

    ``series`` counts redeliveries: a job of an older series finds it superseded and stops.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_id"),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        sa.Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        sa.Index("ix_webhook_deliveries_endpoint_id_status_id", "endpoint_id", "status", "id"),
        sa.Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("msg"))
    endpoint_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(sa.String(40))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    #: The JSON body, exactly as signed and sent on every attempt.
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default=PENDING)
    series: Mapped[int] = mapped_column(default=1)
    attempt_count: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[dt.datetime | None]
    response_status: Mapped[int | None]
    duration_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]
    #: the long-running operation of the latest redelivery (``/api/v1/operations/{id}``)
    operation_id: Mapped[str | None] = mapped_column(sa.String(40))

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", viewonly=True
    )

    @property
    def document(self) -> dict[str, Any]:
        """The body, parsed."""
        return dict(json.loads(self.body))


class WebhookAttempt(Model):
    """One HTTP request of a delivery, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    series: Mapped[int]
    attempted_at: Mapped[dt.datetime]
    #: The receiver's HTTP status; ``None`` when no answer came.
    response_status: Mapped[int | None]
    duration_ms: Mapped[int]
    error: Mapped[str | None] = mapped_column(sa.Text)
    #: The start of the receiver's answer, for the owner's debugging.
    response_body: Mapped[str | None] = mapped_column(sa.Text)
