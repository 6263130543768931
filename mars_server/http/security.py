"""Who is calling, and may they: the core's half of authentication and authorization.

The core never imports the plugin that issues credentials. It asks the
``mars_actor_from_request`` hook who sent a request (the builtin ``auth`` plugin answers for
personal access tokens and OAuth access tokens; an SSO plugin could answer too), then checks
the operation's scopes and permission. Object-level rules stay in the services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from flask import g, request

from mars_server.http.problems import PROBLEM_TYPE_PREFIX, MarsError
from mars_server.state import mars_state

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

    from mars_server.hookspecs import ExternalIdentity, ExternalSignIn, UserInfo

REALM = "mars"
#: the metadata key that marks a response field as a fresh secret (a token, a client or
#: signing secret): ``ma.fields.String(dump_only=True, metadata={SECRET: True})``. It shows
#: in the OpenAPI document (``x-mars-secret: true``) and is checked by MARS's tests; what
#: carries one is answered ``Cache-Control: no-store`` and sealed in the idempotency store,
#: as every credentialed answer is.
SECRET = "x-mars-secret"  # noqa: S105  (a marker's name, not a secret)


@dataclass(frozen=True)
class Actor:
    """The caller of a request, as the credentials describe it.

    :param kind: ``user`` (a person, through a token of theirs) or ``client`` (an OAuth app
        acting for itself, through client credentials).
    :param id: the user's id, or the client's id for ``client`` actors.
    :param scopes: what the credentials allow.
    :param permissions: what the user's roles allow (empty for clients).
    :param credential_id: the token's id, for logs and audit; never the token itself.
    :param client_id: the OAuth app the credential was issued to; ``None`` for a personal
        access token.
    :param expires_at: the last moment the credential (for OAuth, its grant: the refresh
        token's family) can act; ``None`` when it does not end. A credential it issues ends
        no later (:func:`authorize_issuance`).
    """

    kind: Literal["user", "client"]
    id: str
    scopes: frozenset[str]
    permissions: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    credential_id: str | None = None
    client_id: str | None = None
    expires_at: dt.datetime | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def user_id(self) -> str | None:
        return self.id if self.kind == "user" else None


def _bearer(error: str | None = None, description: str | None = None, scope: str = "") -> str:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


class AuthenticationRequired(MarsError):
    status = 401
    type_ = PROBLEM_TYPE_PREFIX + "authentication-required"
    title = "Sign in to do this."

    def __init__(self, detail: str = "Send a token: Authorization: Bearer <token>.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": _bearer()})


class AuthenticationFailed(MarsError):
    """Credentials were sent but are wrong, expired or revoked (RFC 6750 ``invalid_token``)."""

    status = 401
    type_ = PROBLEM_TYPE_PREFIX + "invalid-token"
    title = "The credentials are not valid."

    def __init__(self, detail: str = "The token is unknown, expired or revoked.") -> None:
        super().__init__(
            detail, headers={"WWW-Authenticate": _bearer("invalid_token", "The token is not valid")}
        )


class InsufficientScope(MarsError):
    status = 403
    type_ = PROBLEM_TYPE_PREFIX + "insufficient-scope"
    title = "The token does not allow this."

    def __init__(self, scopes: Iterable[str], detail: str | None = None) -> None:
        needed = " ".join(sorted(scopes))
        super().__init__(
            detail or f"This needs a token with the scope(s): {needed}.",
            headers={"WWW-Authenticate": _bearer("insufficient_scope", scope=needed)},
            scope=needed,
        )


class Forbidden(MarsError):
    status = 403
    type_ = PROBLEM_TYPE_PREFIX + "forbidden"
    title = "You may not do this."


ADMIN_ROLE = "admin"


def role_permissions(roles: Iterable[str]) -> frozenset[str]:
    """The permissions that ``roles`` hold, from what the plugins declared."""
    roles = frozenset(roles)
    declared = mars_state().permissions
    return frozenset(p.name for p in declared if ADMIN_ROLE in roles or roles & set(p.roles))


_UNRESOLVED = object()


def current_actor() -> Actor | None:
    """The request's actor, asked of the plugins once per request; ``None`` if anonymous."""
    actor = g.get("mars_actor", _UNRESOLVED)
    if actor is _UNRESOLVED:
        refused: MarsError | None = g.get("mars_actor_refused")
        if refused is not None:  # asked again (the rate limiter, then the view): once is enough
            raise refused
        try:
            actor = mars_state().plugins.actor_from_request(request)
            if actor is None and request.headers.get("Authorization"):
                raise AuthenticationFailed()
        except MarsError as exc:
            g.mars_actor_refused = exc
            raise
        g.mars_actor = actor
    return actor


def authorize(scopes: Iterable[str] = (), permission: str | None = None) -> Actor:
    """Demand an actor holding every scope in ``scopes`` and ``permission``; return it."""
    actor = current_actor()
    if actor is None:
        raise AuthenticationRequired()
    needed = frozenset(scopes)
    if not needed <= actor.scopes:
        raise InsufficientScope(needed)
    if permission is not None and permission not in actor.permissions:
        raise Forbidden(f"This needs the {permission!r} permission.")
    return actor


def admit(
    scopes: Iterable[str] = (), permission: str | None = None, *, optional: bool = False
) -> Actor | None:
    """:func:`authorize`, or with ``optional=True`` let an anonymous caller in too (``None``);
    the check of ``Blueprint.requires`` and of GraphQL's ``requires``."""
    if optional and current_actor() is None:
        return None
    return authorize(scopes, permission)


def check_issuance(
    actor: Actor, scopes: Iterable[str], *, expires_at: dt.datetime | None = None
) -> None:
    """Refuse to let ``actor`` issue a credential stronger than its own.

    Every scope the new credential would carry must be one the actor's credential carries
    (403 ``insufficient_scope`` naming the missing ones), and it must end no later than the
    actor's does (see :attr:`Actor.expires_at`). Call it (or :func:`authorize_issuance` in
    a view) from every operation that hands out a credential, or something that acts like
    one (a token, an app's secret, a subscription that receives data), with what that
    credential will be able to do.

    :raises InsufficientScope: a scope is missing.
    :raises Forbidden: ``expires_at`` is later than the actor's credential ends.
    """
    missing = frozenset(scopes) - actor.scopes
    if missing:
        names = " ".join(sorted(missing))
        raise InsufficientScope(
            missing,
            f"Your token cannot give what it does not have: it lacks {names}. "
            "Ask for less, or use a token that has them.",
        )
    if expires_at is not None and actor.expires_at is not None and expires_at > actor.expires_at:
        raise Forbidden(
            "Your token cannot give a credential that outlives it: it ends at "
            f"{actor.expires_at.isoformat(timespec='seconds')}. Ask for a shorter lifetime."
        )


def authorize_issuance(scopes: Iterable[str], *, expires_at: dt.datetime | None = None) -> Actor:
    """:func:`check_issuance` for the request's caller, who must be signed in; returns it."""
    actor = authorize()
    check_issuance(actor, scopes, expires_at=expires_at)
    return actor


def user_info(user_id: str) -> UserInfo | None:
    """What the plugins know of ``user_id`` (see the ``mars_user_info`` hook)."""
    return mars_state().plugins.user_info(user_id)


def external_sign_in(
    identity: ExternalIdentity, next_url: str | None = None, binding: str | None = None
) -> ExternalSignIn:
    """Sign in a person another system vouches for (the ``mars_external_sign_in`` hook), in
    the caller's transaction."""
    return mars_state().plugins.external_sign_in(identity, next_url, binding)


def confirm_password(user_id: str, password: str, address: str | None) -> bool:
    """Whether ``password`` is the user's current password (the ``mars_confirm_password``
    hook): a wrong one counts as a failed sign-in; past the limits, a 429 problem."""
    return mars_state().plugins.confirm_password(user_id, password, address)
