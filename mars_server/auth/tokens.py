"""Personal access tokens, and the answer to "who sent this request?".

Creating and revoking a token commits it, with its audit entry.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from flask import current_app

from mars_server import plugin_settings
from mars_server.auth import secrets
from mars_server.auth.models import OAuthToken, PersonalAccessToken, User, UserRole
from mars_server.auth.token_cache import enabled_token_cache
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import (
    Actor,
    AuthenticationFailed,
    InsufficientScope,
    NotFound,
    ValidationFailed,
    check_issuance,
)
from mars_server.http.security import role_permissions
from mars_server.state import mars_state

if TYPE_CHECKING:
    from flask import Request

#: how often the last-use time of a token is written: not on every request.
LAST_USE_RESOLUTION = dt.timedelta(minutes=1)
#: what an OAuth app needs, beside ``account:write``, to create personal access tokens for
#: the user it acts for: a token made by an app is then one the user allowed on its consent
#: page, by name, and never carries more than the app was allowed.
ISSUE_TOKENS_SCOPE = "account:tokens"


def declared_scopes() -> set[str]:
    return set(mars_state().scopes)


def check_scopes(scopes: list[str], field: str = "scopes") -> None:
    unknown = sorted(set(scopes) - declared_scopes())
    if unknown:
        raise ValidationFailed({field: f"Unknown scope(s): {', '.join(unknown)}."})


def create_personal_access_token(
    user: User,
    *,
    name: str,
    scopes: list[str],
    expires_in_days: int | None = None,
    issuer: Actor | None = None,
) -> tuple[PersonalAccessToken, str]:
    """Issue a token (committed); returns the row and the token, which is never stored or
    shown again.

    :param issuer: the credential asking, when it is one (not an operator at the command
        line): the new token is never stronger than it, in scopes or in lifetime: it ends
        when the issuer does, at the latest (its ``expires_at`` says when).
    """
    settings = plugin_settings("auth")
    days = expires_in_days or settings["pat_default_days"]
    if days > settings["pat_max_days"]:
        raise ValidationFailed(
            {"expires_in_days": f"Tokens live at most {settings['pat_max_days']} days."}
        )
    check_scopes(scopes)
    expires_at = utcnow() + dt.timedelta(days=days)
    if issuer is not None:
        if issuer.client_id is not None and ISSUE_TOKENS_SCOPE not in issuer.scopes:
            raise InsufficientScope(
                [ISSUE_TOKENS_SCOPE],
                "An app creates personal access tokens for you only when you allowed it "
                f"the {ISSUE_TOKENS_SCOPE} scope.",
            )
        if issuer.expires_at is not None:
            expires_at = min(expires_at, issuer.expires_at)
        check_issuance(issuer, scopes, expires_at=expires_at)
    token = secrets.new_personal_access_token()
    row = PersonalAccessToken(
        user_id=user.id,
        name=name,
        hint=secrets.token_hint(token),
        digest=secrets.digest(token),
        scopes=" ".join(sorted(set(scopes))),
        expires_at=expires_at,
        issued_by_client_id=issuer.client_id if issuer is not None else None,
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
        issued_by_client_id=row.issued_by_client_id,
    )
    db.session.commit()
    return row, token


def revoke_issued_by(client_id: str, user_id: str | None = None) -> int:
    """Revoke the personal access tokens the app ``client_id`` created (for ``user_id``, or
    for everyone), in the caller's transaction; returns how many."""
    where = [
        PersonalAccessToken.issued_by_client_id == client_id,
        PersonalAccessToken.revoked_at.is_(None),
    ]
    if user_id is not None:
        where.append(PersonalAccessToken.user_id == user_id)
    result = db.session.execute(
        sa.update(PersonalAccessToken)
        .where(*where)
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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
    """Revoke the token (committed); one revoked already stays as it is."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(
            "auth.token_revoked", target=row.id, kind="personal_access_token", user_id=row.user_id
        )
    db.session.commit()


def _permissions(roles: frozenset[str]) -> frozenset[str]:
    """:func:`role_permissions`, remembered per set of roles: what the plugins declared does
    not change while the app runs, and a token's check must stay cheap."""
    known: dict[frozenset[str], frozenset[str]] = current_app.extensions.setdefault(
        "mars.auth.permissions", {}
    )
    found = known.get(roles)
    if found is None:
        if len(known) >= 1024:  # a bound, though users hold few combinations of roles
            known.clear()
        found = known[roles] = role_permissions(roles)
    return found


def _user_actor(
    user_id: str,
    roles: frozenset[str],
    scopes: frozenset[str],
    credential_id: str,
    expires_at: dt.datetime,
    client_id: str | None = None,
) -> Actor:
    return Actor(
        kind="user",
        id=user_id,
        scopes=scopes,
        roles=roles,
        permissions=_permissions(roles),
        credential_id=credential_id,
        client_id=client_id,
        expires_at=expires_at,
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
    "refresh_expires_at",
    "revoked_at",
    "resources",
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


def _touch_if_due(
    pat_id: str, last_used_at: dt.datetime | None, now: dt.datetime, address: str | None
) -> bool:
    """Record the token's use, at most once per :data:`LAST_USE_RESOLUTION`; whether it did."""
    if last_used_at is not None and now - last_used_at < LAST_USE_RESOLUTION:
        return False
    # A separate, tiny transaction: the request's own may fail and roll back.
    with db.engine.begin() as conn:
        conn.execute(_TOUCH_PAT, {"pat_id": pat_id, "now": now, "address": address})
    return True


def _pat_actor(token: str, address: str | None) -> Actor:
    digest = secrets.digest(token)
    cache = enabled_token_cache()
    generation, entry = cache.lookup("pat", digest) if cache is not None else (None, None)
    changed = entry is None
    if entry is None:
        # A token of the wrong shape (a typo: its checksum fails) never reaches the database.
        if not secrets.is_personal_access_token(token):
            raise AuthenticationFailed()
        row, roles = _found(_PAT_LOOKUP, digest)
        if row.revoked_at is not None:
            raise AuthenticationFailed()
        entry = {
            "id": row.id,
            "user_id": row.user_id,
            "scopes": row.scopes,
            "roles": sorted(roles),
            "expires_at": row.expires_at.isoformat(),
            "last_used_at": row.last_used_at and row.last_used_at.isoformat(),
        }
    # Checked on every request, cached or not: a cached token expires on time.
    now = utcnow()
    expires_at = dt.datetime.fromisoformat(entry["expires_at"])
    if expires_at <= now:
        raise AuthenticationFailed()
    last_used_at = entry["last_used_at"]
    if _touch_if_due(
        entry["id"], last_used_at and dt.datetime.fromisoformat(last_used_at), now, address
    ):
        entry["last_used_at"] = now.isoformat()
        changed = True
    if changed and cache is not None and generation is not None:
        cache.store("pat", digest, generation, entry, expires_at)
    return _user_actor(
        entry["user_id"],
        frozenset(entry["roles"]),
        frozenset(entry["scopes"].split()),
        entry["id"],
        expires_at=expires_at,
    )


def _oauth_actor(token: str) -> Actor:
    digest = secrets.digest(token)
    cache = enabled_token_cache()
    generation, entry = cache.lookup("oauth", digest) if cache is not None else (None, None)
    if entry is None:
        row, roles = _found(_OAUTH_LOOKUP, digest)
        if row.revoked_at is not None or row.access_expires_at <= utcnow():
            raise AuthenticationFailed()
        if row.resources:  # a token for other services (RFC 8707): not for MARS's API
            raise AuthenticationFailed()
        entry = {
            "id": row.id,
            "user_id": row.user_id,
            "client_id": row.client_id,
            "scope": row.scope,
            "roles": sorted(roles),
            "access_expires_at": row.access_expires_at.isoformat(),
            # The grant acts as long as its refresh token may renew it.
            "expires_at": max(
                row.access_expires_at, row.refresh_expires_at or row.access_expires_at
            ).isoformat(),
        }
        if cache is not None and generation is not None:
            cache.store("oauth", digest, generation, entry, row.access_expires_at)
    # Checked on every request, cached or not: a cached token expires on time.
    if dt.datetime.fromisoformat(entry["access_expires_at"]) <= utcnow():
        raise AuthenticationFailed()
    scopes = frozenset(entry["scope"].split())
    expires_at = dt.datetime.fromisoformat(entry["expires_at"])
    if entry["user_id"] is None:
        return Actor(
            kind="client",
            id=entry["client_id"],
            scopes=scopes,
            credential_id=entry["id"],
            client_id=entry["client_id"],
            expires_at=expires_at,
        )
    return _user_actor(
        entry["user_id"],
        frozenset(entry["roles"]),
        scopes,
        entry["id"],
        expires_at,
        entry["client_id"],
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
