"""``emit()``: events written in the caller's transaction, and the audit entry beside them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server.db import db, new_id, utcnow
from mars_server.events import context
from mars_server.events.jobs import notify_after_commit
from mars_server.events.models import OutboxEvent
from mars_server.hookspecs import AuditEntry
from mars_server.state import mars_state

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping

    import marshmallow as ma


_INSERT_EVENT = sa.insert(cast("sa.Table", OutboxEvent.__table__))


@functools.cache
def _payload_schema(schema: type[ma.Schema]) -> ma.Schema:
    """One instance per payload schema: building a marshmallow schema costs more than
    dumping with it, and dumping keeps no state."""
    return schema()


class UnknownEventType(LookupError):
    """``emit`` was given a type no plugin declares (a programming error)."""


@dataclass(frozen=True)
class Event:
    """A committed event, as handlers, notifications and webhooks see it.

    :param audience: the users who may see the object it is about; ``None``: everyone.
    """

    id: str
    type: str
    payload: dict[str, Any]
    occurred_at: dt.datetime
    actor_id: str | None = None
    audience: tuple[str, ...] | None = None
    request_id: str | None = None

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        return cls(
            id=row.id,
            type=row.type,
            payload=row.payload,
            occurred_at=row.occurred_at,
            actor_id=row.actor_id,
            audience=tuple(row.audience) if row.audience is not None else None,
            request_id=row.request_id,
        )

    def visible_to(self, user_id: str) -> bool:
        return self.audience is None or user_id in self.audience


def emit(
    type: str,
    payload: Mapping[str, Any],
    *,
    audience: Iterable[str] | None = None,
    target: str | None = None,
) -> Event:
    """Record that ``type`` happened, in the caller's transaction.

    The event exists if and only if the transaction commits; handlers, notifications and
    webhooks then see it at least once. The payload is dumped with the type's declared
    schema (what is not in the schema is not sent), and an audit entry is written beside it.

    :param type: a declared event type (``project.created``).
    :param payload: the object as subscribers should see it.
    :param audience: the ids of the users who may see the object; ``None`` when everyone
        may (a public object). Webhooks and notifications reach no one else.
    :param target: the id of the object, for the audit log (default: ``payload["id"]``).
    :raises UnknownEventType: when no plugin declares ``type``.
    """
    state = mars_state()
    event_type = state.event_types.get(type)
    if event_type is None:
        raise UnknownEventType(f"no plugin declares the event type {type!r}")
    data = _payload_schema(event_type.payload).dump(payload)
    acting = context.current()
    event = Event(
        id=new_id("evt"),
        type=type,
        payload=data,
        occurred_at=utcnow(),
        actor_id=acting.actor_id,
        audience=tuple(dict.fromkeys(audience)) if audience is not None else None,
        request_id=acting.request_id,
    )
    # On the session's connection, so in its transaction, but without flushing the ORM's
    # pending changes first: an outbox row refers to nothing, and emit() stays cheap.
    db.session.connection().execute(
        _INSERT_EVENT,
        {
            "id": event.id,
            "type": event.type,
            "payload": event.payload,
            "audience": list(event.audience) if event.audience is not None else None,
            "actor_id": event.actor_id,
            "request_id": event.request_id,
            "occurred_at": event.occurred_at,
        },
    )
    notify_after_commit(events=True)
    _record(acting, type, target if target is not None else data.get("id"), data, event.occurred_at)
    return event


def audit(action: str, *, target: str | None = None, **details: Any) -> None:
    """Write a security event to the audit log, in the caller's transaction.

    For what is not an event: sign-ins, tokens created or revoked, roles changed, operators'
    overrides. ``details`` must never hold a secret.
    """
    _record(context.current(), action, target, details, utcnow())


def _record(
    acting: context.ActingContext,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
    when: dt.datetime,
) -> None:
    mars_state().plugins.audit_entry(
        AuditEntry(
            action=action,
            actor_id=acting.actor_id,
            target=target,
            address=acting.address,
            user_agent=acting.user_agent,
            request_id=acting.request_id,
            occurred_at=when,
            details=dict(details),
        )
    )
