"""Who is acting, and from where: for events and the audit log.

In a request: the authenticated actor, the client's address and user agent, the request id.
From the command line: ``cli:<login>`` (operators' overrides are audited as theirs). In a job:
whatever the code that enqueued it passes on, else nobody.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import g, has_request_context, request

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class ActingContext:
    actor_id: str | None = None
    address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


_override: contextvars.ContextVar[ActingContext | None] = contextvars.ContextVar(
    "mars_acting_context", default=None
)


def current() -> ActingContext:
    override = _override.get()
    if override is not None:
        return override
    if not has_request_context():
        return ActingContext()
    from mars_server.http.security import AuthenticationFailed, current_actor

    try:
        actor = current_actor()
    except AuthenticationFailed:
        actor = None
    return ActingContext(
        actor_id=actor.id if actor is not None else None,
        address=request.remote_addr,
        user_agent=(request.user_agent.string or None) and request.user_agent.string[:500],
        request_id=g.get("request_id"),
    )


@contextlib.contextmanager
def acting_as(context: ActingContext) -> Iterator[ActingContext]:
    """Attribute what happens inside to ``context`` (CLI commands, jobs)."""
    token = _override.set(context)
    try:
        yield context
    finally:
        _override.reset(token)


def operator() -> ActingContext:
    """The context of a ``mars`` command: the operator's login, on this machine."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        login = "unknown"
    return ActingContext(actor_id=f"cli:{login}", address="local")
