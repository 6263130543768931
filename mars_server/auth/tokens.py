"""Personal access tokens, and the answer to "who sent this request?"."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import current_app

from mars_server import plugin_settings
from mars_server.auth import secrets
from mars_server.auth.models import OAuthToken, PersonalAccessToken, User
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


def actor_for_user(
    user: User, scopes: frozenset[str], *, credential_id: str, client_id: str | None = None
) -> Actor:
    roles = user.role_names
    return Actor(
        kind="user",
        id=user.id,
        scopes=scopes,
        roles=roles,
        permissions=role_permissions(roles),
        credential_id=credential_id,
        client_id=client_id,
    )


def _active_user(user_id: str | None) -> User:
    user = db.session.get(User, user_id) if user_id else None
    if user is None or user.status != "active":
        raise AuthenticationFailed()
    return user


def _pat_actor(token: str, address: str | None) -> Actor:
    if not secrets.is_personal_access_token(token):
        raise AuthenticationFailed()
    row = db.session.scalar(
        sa.select(PersonalAccessToken).where(PersonalAccessToken.digest == secrets.digest(token))
    )
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationFailed()
    user = _active_user(row.user_id)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION:
        # A separate, tiny transaction: the request's own may fail and roll back.
        with db.engine.begin() as conn:
            conn.execute(
                sa.update(PersonalAccessToken)
                .where(PersonalAccessToken.id == row.id)
                .values(last_used_at=now, last_used_ip=address)
            )
    return actor_for_user(user, frozenset(row.scopes.split()), credential_id=row.id)


def _oauth_actor(token: str) -> Actor:
    row = db.session.scalar(
        sa.select(OAuthToken).where(OAuthToken.access_digest == secrets.digest(token))
    )
    if row is None or row.revoked_at is not None or row.access_expires_at <= utcnow():
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
    return actor_for_user(
        _active_user(row.user_id), scopes, credential_id=row.id, client_id=row.client_id
    )


def actor_from_request(request: Request) -> Actor | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    if token.startswith(secrets.PAT_PREFIX):
        return _pat_actor(token, request.remote_addr)
    return _oauth_actor(token)
