"""Business rules of webhook endpoints and their delivery log. No HTTP here.

An endpoint belongs to the user who created it; to anyone else it does not exist (404).
OAuth apps acting for themselves have no endpoints: webhooks follow a person's rights,
which decide which events they may receive.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from mars_server import operations
from mars_server.config import plugin_settings
from mars_server.crypto import seal
from mars_server.db import db, utcnow
from mars_server.events import audit, enqueue
from mars_server.http import (
    Conflict,
    Forbidden,
    NotFound,
    Sort,
    check_issuance,
    first_pages,
    paginate,
)
from mars_server.state import mars_state
from mars_server.webhooks.models import (
    BY_OWNER,
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from mars_server.webhooks.signing import new_secret

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mars_server.http import Actor, Page

DELIVER_TASK = "webhooks.deliver"


def planned_attempt(delivery_id: str, *, series: int, made: int, number: int) -> dict[str, Any]:
    """One attempt in the arguments of a ``webhooks.deliver`` job.

    :param made: the delivery's ``attempt_count`` before it: an attempt already made (a job
        run again after its worker died) is not made twice.
    :param number: its number in its series, which picks the wait before the next one.
    """
    return {"id": delivery_id, "series": series, "made": made, "number": number}


def first_attempt(delivery_id: str, *, series: int, made: int = 0) -> dict[str, Any]:
    return planned_attempt(delivery_id, series=series, made=made, number=1)


def owner_id_of(actor: Actor) -> str:
    """The user whose endpoints ``actor`` manages."""
    if actor.user_id is None:
        raise Forbidden("Webhook endpoints belong to people: use a token of a user.")
    return actor.user_id


def _host(url: str) -> str | None:
    # For the audit log: the host says where deliveries go; the rest of a URL may be a secret.
    return urlsplit(url).hostname


def list_endpoints(owner_id: str, args: dict[str, Any]) -> Page[WebhookEndpoint]:
    stmt = sa.select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner_id)
    # Not on the URL: a cursor (signed, not sealed) would carry it, and a URL may hold a token.
    sort = Sort({}, default="id")
    return paginate(stmt, WebhookEndpoint.id, args, name=f"webhooks:{owner_id}", sort=sort)


def get_endpoint(owner_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.scalar(
        sa.select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.owner_id == owner_id
        )
    )
    if endpoint is None:
        raise NotFound(f"No webhook endpoint {endpoint_id!r}.")
    return endpoint


def scopes_to_read(*event_types: str) -> set[str]:
    """The scopes that read what events of ``event_types`` show (their ``scope``)."""
    declared = mars_state().event_types
    scopes = {declared[name].scope for name in event_types if name in declared}
    return {scope for scope in scopes if scope}


def _check_issuance(issuer: Actor | None, events: list[str]) -> None:
    """An endpoint receives what its events show: only a token that may read that sets it
    up, points it elsewhere or gets its secret (see the event types' ``scope``)."""
    if issuer is not None:
        check_issuance(issuer, scopes_to_read(*events))


def create_endpoint(
    owner_id: str, data: dict[str, Any], issuer: Actor | None = None
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; return it and its secret, which is never readable again.

    :param issuer: the credential asking: it must have the scopes of every event subscribed.
    """
    _check_issuance(issuer, data["events"])
    secret = new_secret()
    endpoint = WebhookEndpoint(
        owner_id=owner_id,
        url=data["url"],
        description=data.get("description", ""),
        secret_sealed=seal(secret),
    )
    endpoint.events = data["events"]
    _set_disabled(endpoint, data.get("disabled", False))
    db.session.add(endpoint)
    db.session.flush()
    audit("webhooks.endpoint_created", target=endpoint.id, host=_host(endpoint.url))
    db.session.commit()
    return endpoint, secret


def _set_disabled(endpoint: WebhookEndpoint, disabled: bool) -> None:
    if disabled and not endpoint.disabled:
        endpoint.disabled_reason, endpoint.disabled_at = BY_OWNER, utcnow()
    elif not disabled and endpoint.disabled:
        # Enabled again: whatever failed before starts with a clean slate.
        endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
    endpoint.disabled = disabled


def update_endpoint(
    endpoint: WebhookEndpoint, changes: dict[str, Any], issuer: Actor | None = None
) -> WebhookEndpoint:
    """Change ``endpoint``; a new URL or new events need ``issuer`` to have their scopes."""
    if not changes:
        return endpoint
    if "url" in changes:
        _check_issuance(issuer, changes.get("events", endpoint.events))
    elif "events" in changes:
        _check_issuance(issuer, sorted(set(changes["events"]) - set(endpoint.events)))
    if "url" in changes:
        endpoint.url = changes["url"]
    if "description" in changes:
        endpoint.description = changes["description"]
    if "events" in changes:
        endpoint.events = changes["events"]
    if "disabled" in changes:
        _set_disabled(endpoint, changes["disabled"])
    # Also when only the subscriptions changed: a new version, so a new ETag.
    endpoint.updated_at = utcnow()
    audit(
        "webhooks.endpoint_updated",
        target=endpoint.id,
        fields=sorted(changes),
        host=_host(endpoint.url),
    )
    db.session.commit()
    return endpoint


def _end_redeliveries(endpoint_ids: Sequence[str]) -> None:
    """The redeliveries still under way to endpoints about to be deleted end now, failed:
    their deliveries go with the endpoints, so no attempt would ever end them."""
    open_ones = db.session.scalars(
        sa.select(WebhookDelivery.operation_id).where(
            WebhookDelivery.endpoint_id.in_(list(endpoint_ids)),
            WebhookDelivery.operation_id.is_not(None),
        )
    )
    gone = Conflict("The webhook endpoint was deleted, with its deliveries.", status=410)
    for operation_id in open_ones:
        if operation_id is not None:
            operations.settle(operation_id, problem=gone)


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its delivery log; its pending deliveries stop."""
    audit("webhooks.endpoint_deleted", target=endpoint.id, host=_host(endpoint.url))
    _end_redeliveries([endpoint.id])
    db.session.delete(endpoint)
    db.session.commit()


def rotate_secret(endpoint: WebhookEndpoint, issuer: Actor | None = None) -> str:
    """A new secret; the current one keeps signing beside it for ``secret_grace_hours``.

    :param issuer: the credential asking: it must have the scopes of the endpoint's events.
    """
    _check_issuance(issuer, endpoint.events)
    grace = dt.timedelta(hours=plugin_settings("webhooks")["secret_grace_hours"])
    secret = new_secret()
    if grace:
        endpoint.previous_secret_sealed = endpoint.secret_sealed
        endpoint.previous_secret_expires_at = utcnow() + grace
    else:
        endpoint.previous_secret_sealed = endpoint.previous_secret_expires_at = None
    endpoint.secret_sealed = seal(secret)
    endpoint.updated_at = utcnow()
    audit("webhooks.secret_rotated", target=endpoint.id)
    db.session.commit()
    return secret


def list_deliveries(endpoint: WebhookEndpoint, args: dict[str, Any]) -> Page[WebhookDelivery]:
    stmt = sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if args.get("status"):
        stmt = stmt.where(WebhookDelivery.status == args["status"])
    name = f"webhook-deliveries:{endpoint.id}"
    return paginate(stmt, WebhookDelivery.id, args, name=name, sort=Sort({}, default="id"))


def first_deliveries(
    endpoint_ids: list[str], args: dict[str, Any]
) -> dict[str, Page[WebhookDelivery]]:
    """The first page of deliveries of each endpoint (by id), in one query: what
    :func:`list_deliveries` answers for each, cursors included. The ids must be of
    endpoints the caller may read (their owner's, as :func:`get_endpoint` finds them)."""
    stmt = sa.select(WebhookDelivery)
    if args.get("status"):
        stmt = stmt.where(WebhookDelivery.status == args["status"])
    return first_pages(
        stmt,
        WebhookDelivery.id,
        args,
        group=WebhookDelivery.endpoint_id,
        groups=endpoint_ids,
        name=lambda endpoint_id: f"webhook-deliveries:{endpoint_id}",
    )


def get_delivery(endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    delivery = db.session.scalar(
        sa.select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id!r} for this endpoint.")
    return delivery


#: The kind of a redelivery's long-running operation.
REDELIVERY = "webhooks.redeliver"


def redeliver(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> WebhookDelivery:
    """Start a new series of attempts, with the same ``webhook-id`` and body, as a
    long-running operation (``delivery.operation_id``) that ends with the series.

    A series still waiting for its next attempt is superseded: its job finds a newer series
    and stops, so attempts never run twice side by side.
    """
    if endpoint.disabled:
        raise Conflict("The endpoint is disabled: enable it before redelivering.")
    if delivery.operation_id is not None:  # the redelivery it supersedes ends here
        replaced = Conflict("A newer redelivery of this delivery replaced this one.")
        operations.settle(delivery.operation_id, problem=replaced)
    delivery.operation_id = operations.create(REDELIVERY, owner_id=endpoint.owner_id).id
    delivery.series += 1
    delivery.status = PENDING
    delivery.completed_at = None
    enqueue(
        DELIVER_TASK,
        key=f"{DELIVER_TASK}:{delivery.id}:{delivery.series}",
        attempts=[first_attempt(delivery.id, series=delivery.series, made=delivery.attempt_count)],
    )
    audit("webhooks.redelivered", target=delivery.id, endpoint=endpoint.id)
    db.session.commit()
    return delivery


def forget_plugin(name: str, event_types: Sequence[str], *, dry_run: bool = False) -> list[str]:
    """Unsubscribe every endpoint from ``event_types`` and every ``<name>.*`` type (plugin
    ``name`` is purged), in the caller's transaction, which the caller commits.

    An endpoint that keeps other event types gets a new version (so a new ETag); one left
    with none is deleted with its delivery log. Return one line per kind of thing removed
    (with ``dry_run``: that would be, changing nothing).
    """
    event_type = WebhookSubscription.event_type
    theirs = sa.or_(
        event_type.in_(list(event_types)), event_type.startswith(f"{name}.", autoescape=True)
    )
    found = db.session.execute(
        sa.select(WebhookSubscription.endpoint_id, event_type).where(theirs)
    ).all()
    if not found:
        return []
    touched = sorted({row.endpoint_id for row in found})
    keeping = set(
        db.session.scalars(
            sa.select(WebhookSubscription.endpoint_id)
            .where(WebhookSubscription.endpoint_id.in_(touched), ~theirs)
            .distinct()
        )
    )
    changed = [endpoint for endpoint in touched if endpoint in keeping]
    emptied = [endpoint for endpoint in touched if endpoint not in keeping]
    line = f"webhook subscriptions to {', '.join(sorted({row.event_type for row in found}))}"
    if changed:
        line += f" (endpoints that keep other event types: {', '.join(changed)})"
    lines = [line]
    if emptied:
        lines.append(
            "webhook endpoints left with no event type, with their delivery logs: "
            + ", ".join(emptied)
        )
    if dry_run:
        return lines
    db.session.execute(sa.delete(WebhookSubscription).where(theirs))
    if changed:
        db.session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(changed))
            .values(version=WebhookEndpoint.version + 1, updated_at=utcnow())
        )
    if emptied:
        # The database deletes their deliveries and attempts (ON DELETE CASCADE).
        _end_redeliveries(emptied)
        db.session.execute(sa.delete(WebhookEndpoint).where(WebhookEndpoint.id.in_(emptied)))
    return lines
