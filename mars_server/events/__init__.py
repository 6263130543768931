"""Events, background jobs and the audit trail: the public API for services and plugins.

- :func:`emit` records an event in the caller's transaction (an outbox row and an audit
  entry); handlers, notifications and webhooks get it at least once after the commit.
- :func:`enqueue` adds a background job in the caller's transaction.
- :func:`audit` records a security event (sign-ins, tokens, roles, operators' overrides).

See docs/events.md and docs/jobs.md.
"""

from __future__ import annotations

from mars_server.events.context import ActingContext, acting_as
from mars_server.events.jobs import Retry, RunningJob, UnknownTask, current_job, enqueue
from mars_server.events.outbox import Event, UnknownEventType, audit, emit

__all__ = [
    "ActingContext",
    "Event",
    "Retry",
    "RunningJob",
    "UnknownEventType",
    "UnknownTask",
    "acting_as",
    "audit",
    "current_job",
    "emit",
    "enqueue",
]
