"""Keeping the delivery log small: the hourly ``webhooks.purge`` task."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from mars_server.config import plugin_settings
from mars_server.db import db, utcnow
from mars_server.metrics import purged
from mars_server.webhooks.models import PENDING, WebhookAttempt, WebhookDelivery

# The logger docs/webhooks.md names for deliveries (see mars_server.webhooks.sending).
log = logging.getLogger("mars_server.webhooks.delivery")

PURGE_TASK = "webhooks.purge"


def purge() -> None:
    """The ``webhooks.purge`` task: forget finished deliveries older than the retention."""
    days = plugin_settings("webhooks")["log_retention_days"]
    cutoff = utcnow() - dt.timedelta(days=days)
    old = sa.select(WebhookDelivery.id).where(
        WebhookDelivery.created_at < cutoff, WebhookDelivery.status != PENDING
    )
    db.session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old)))
    result = db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    purged("webhook_deliveries", count)
    log.info("webhooks: purged %d old deliveries", count)
