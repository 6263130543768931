"""Personal access tokens, and the answer to "who sent this request?"."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from flask import current_app

from mars_server import plugin_settings
from mars_server.auth import secrets
from mars_server.auth.models import OAuthToken, PersonalAccessToken, User, UserRole
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import Actor, AuthenticationFailed, NotFound, abort
from mars_server.http.security import role_permissions

if TYPE_CHECKING:
    from flask import Request

#: how often the last-use time of a token is written: not on every request.
LAST_USE_RESOLUTION = dt.timedelta(minutes=1)


def declared_scopes() -> set[str]:
    return set(current_app.extensions["mars"].scopes)


def check_scopes(scopes: list[str], field: str = "scopes") -> None:
    unknown = sorted(set(scopes) - declared_scopes())
    if unknown:
        abort(422, messages={"json": {field: [f"Unknown scope(s): {', '.join(unknown)}."]}})


def create_personal_access_token(
    user: User, *, name: str, scopes: list[str], expires_in_days: int | None = None
) -> tuple[PersonalAccessToken, str]:
    """Issue a token; returns the row and the token, which is never stored or shown again."""
    settings = plugin_settings("auth")
    days = expires_in_days or settings["pat_default_days"]
    if days > settings["pat_max_days"]:
        abort(
            422,
            messages={
                "json": {
                    "expires_in_days": [f"Tokens live at most {settings['pat_max_days']} days."]
                }
            },
        )
    check_scopes(scopes)
    token = secrets.new_personal_access_token()
    row = PersonalAccessToken(
        user_id=user.id,
        name=name,
        hint=secrets.token_hint(token),
        digest=secrets.digest(token),
        scopes=" ".join(sorted(set(scopes))),
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    db.session.add(row)
    db.session.flush()
    audit(
        "auth.token_created",
        target=row.id,
        kind="personal_access_token",
        user_id=user.id,
        name=name,
        scopes=row.scopes.split(),
        expires_at=row.expires_at,
    )
    return row, token


def list_personal_access_tokens(user: User) -> list[PersonalAccessToken]:
    return list(
        db.session.scalars(
            sa.select(PersonalAccessToken)
            .where(PersonalAccessToken.user_id == user.id)
            .order_by(PersonalAccessToken.created_at.desc())
        )
    )


def get_personal_access_token(user: User, token_id: str) -> PersonalAccessToken:
    row = db.session.get(PersonalAccessToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"No token {token_id!r}.")
    return row


def revoke_personal_access_token(row: PersonalAccessToken) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(
            "auth.token_revoked", target=row.id, kind="personal_access_token", user_id=row.user_id
        )


def _user_actor(
    user_id: str,
    roles: frozenset[str],
    scopes: frozenset[str],
    credential_id: str,
    client_id: str | None = None,
) -> Actor:
    return Actor(
        kind="user",
        id=user_id,
        scopes=scopes,
        roles=roles,
        permissions=role_permissions(roles),
        credential_id=credential_id,
        client_id=client_id,
    )


_pats = cast("sa.Table", PersonalAccessToken.__table__)
_oauth_tokens = cast("sa.Table", OAuthToken.__table__)
_users = cast("sa.Table", User.__table__)
_roles = cast("sa.Table", UserRole.__table__)


def _lookup(table: sa.Table, digest_column: str, *columns: str) -> sa.Select[Any]:
    """One statement for a token, its user's status and roles (one row per role), built once:
    every authenticated request runs it."""
    return (
        sa.select(*(table.c[name] for name in columns), _users.c.status, _roles.c.role)
        .select_from(
            table.outerjoin(_users, _users.c.id == table.c.user_id).outerjoin(
                _roles, _roles.c.user_id == table.c.user_id
            )
        )
        .where(table.c[digest_column] == sa.bindparam("digest"))
    )


_PAT_LOOKUP = _lookup(
    _pats, "digest", "id", "user_id", "scopes", "expires_at", "revoked_at", "last_used_at"
)
_OAUTH_LOOKUP = _lookup(
    _oauth_tokens,
    "access_digest",
    "id",
    "user_id",
    "client_id",
    "scope",
    "access_expires_at",
    "revoked_at",
)
_TOUCH_PAT = (
    sa.update(_pats)
    .where(_pats.c.id == sa.bindparam("pat_id"))
    .values(last_used_at=sa.bindparam("now"), last_used_ip=sa.bindparam("address"))
)


def _found(statement: sa.Select[Any], digest: str) -> tuple[Any, frozenset[str]]:
    """The token's row and its user's roles; :class:`AuthenticationFailed` when unknown, or
    when it belongs to a user who is not active."""
    rows = db.session.execute(statement, {"digest": digest}).all()
    if not rows:
        raise AuthenticationFailed()
    row = rows[0]
    if row.user_id is not None and row.status != "active":
        raise AuthenticationFailed()
    return row, frozenset(r.role for r in rows if r.role is not None)


def _pat_actor(token: str, address: str | None) -> Actor:
    if not secrets.is_personal_access_token(token):
        raise AuthenticationFailed()
    row, roles = _found(_PAT_LOOKUP, secrets.digest(token))
    now = utcnow()
    if row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationFailed()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION:
        # A separate, tiny transaction: the request's own may fail and roll back.
        with db.engine.begin() as conn:
            conn.execute(_TOUCH_PAT, {"pat_id": row.id, "now": now, "address": address})
    return _user_actor(row.user_id, roles, frozenset(row.scopes.split()), row.id)


def _oauth_actor(token: str) -> Actor:
    row, roles = _found(_OAUTH_LOOKUP, secrets.digest(token))
    if row.revoked_at is not None or row.access_expires_at <= utcnow():
        raise AuthenticationFailed()
    scopes = frozenset(row.scope.split())
    if row.user_id is None:
        return Actor(
            kind="client",
            id=row.client_id,
            scopes=scopes,
            credential_id=row.id,
            client_id=row.client_id,
        )
    return _user_actor(row.user_id, roles, scopes, row.id, row.client_id)


def actor_from_request(request: Request) -> Actor | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    if token.startswith(secrets.PAT_PREFIX):
        return _pat_actor(token, request.remote_addr)
    return _oauth_actor(token)
