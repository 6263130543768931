"""OAuth apps that users register: their redirect URIs, scopes, grants and secrets. No HTTP here.

A confidential app's secret is returned by :func:`create_app` and :func:`rotate_secret` only,
and stored as a digest; after a rotation the previous secret keeps working for a grace period.
Every change commits, with its audit entry; a refused one raises before writing anything.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets as random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from mars_server import plugin_settings
from mars_server.auth import secrets, tokens
from mars_server.auth.models import AuthorizationCode, OAuthClient, OAuthToken
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import Conflict, NotFound, ValidationFailed, check_issuance

if TYPE_CHECKING:
    from mars_server.auth.models import User
    from mars_server.http import Actor

CLIENT_TYPES = ("confidential", "public")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_REDIRECT_URI_LENGTH = 2000


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI; ``None`` when it can."""
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        return f"Use at most {MAX_REDIRECT_URI_LENGTH} characters."
    if any(ord(char) <= 32 or ord(char) == 127 for char in uri):
        return "Must not contain spaces or control characters."
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("https", "http") or not host:
        return "Use an absolute https:// URL (http:// only for localhost or 127.0.0.1)."
    if "@" in parts.netloc:
        return "Must not contain a user name or password."
    if parts.fragment or uri.endswith("#"):
        return "Must not contain a fragment (#...)."
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return "http:// is only allowed for localhost and 127.0.0.1; use https://."
    return None


def _check(values: dict[str, Any], client_type: str) -> None:
    errors: dict[str, list[str]] = {}
    for index, uri in enumerate(values.get("redirect_uris", ())):
        problem = redirect_uri_problem(uri)
        if problem:
            errors.setdefault("redirect_uris", []).append(f"{index}: {problem}")
    grant_types = set(values.get("grant_types", ()))
    if client_type == "public" and "client_credentials" in grant_types:
        errors.setdefault("grant_types", []).append(
            "Public apps cannot use client_credentials: they hold no secret."
        )
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        errors.setdefault("grant_types", []).append("refresh_token needs authorization_code.")
    if "authorization_code" in grant_types and not values.get("redirect_uris"):
        errors.setdefault("redirect_uris", []).append(
            "Give at least one redirect URI for authorization_code."
        )
    if errors:
        raise ValidationFailed(errors)
    tokens.check_scopes(list(values.get("scopes", ())))


def _new_secret(app: OAuthClient) -> str:
    secret = secrets.new_client_secret()
    app.secret_digest = secrets.digest(secret)
    return secret


def create_app(
    owner: User, values: dict[str, Any], issuer: Actor | None = None
) -> tuple[OAuthClient, str | None]:
    """Register an app for ``owner``; returns it and its secret (``None`` for public apps).

    :param issuer: the credential asking: the app may be allowed only scopes it has itself.
    """
    _check(values, values["client_type"])
    if issuer is not None:
        check_issuance(issuer, values["scopes"])
    app = OAuthClient(
        client_id="mars_app_" + random.token_urlsafe(18),
        owner_id=owner.id,
        name=values["name"],
        client_type=values["client_type"],
        redirect_uris=list(values.get("redirect_uris", [])),
        post_logout_redirect_uris=[],
        scopes=" ".join(sorted(set(values["scopes"]))),
        grant_types=sorted(set(values["grant_types"])),
        first_party=False,
        access_token_format=values.get("access_token_format", "opaque"),
    )
    secret = _new_secret(app) if app.client_type == "confidential" else None
    _add(app)
    return app, secret


def _add(app: OAuthClient) -> None:
    """Keep the new ``app``, audited, and commit."""
    db.session.add(app)
    db.session.flush()
    audit(
        "auth.app_created",
        target=app.id,
        client_id=app.client_id,
        name=app.name,
        client_type=app.client_type,
        first_party=app.first_party,
        access_token_format=app.access_token_format,
        redirect_uris=app.redirect_uris,
        post_logout_redirect_uris=app.post_logout_redirect_uris,
        scopes=app.scopes.split(),
        grant_types=app.grant_types,
    )
    db.session.commit()


def create_first_party_app(
    name: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    scopes: list[str],
    access_token_format: str = "opaque",  # noqa: S107  (a format, not a secret)
) -> OAuthClient:
    """Declare the organisation's own app (the operator's ``mars apps create --first-party``):
    a public client (authorization code + PKCE, refresh tokens) that nobody owns, whose
    users are not asked for consent. Committed, audited."""
    values = {
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": scopes,
    }
    _check(values, "public")
    errors = [
        f"{index}: {problem}"
        for index, uri in enumerate(post_logout_redirect_uris)
        if (problem := redirect_uri_problem(uri))
    ]
    if errors:
        raise ValidationFailed({"post_logout_redirect_uris": errors})
    if not scopes:
        raise ValidationFailed({"scopes": ["Give at least one scope."]})
    app = OAuthClient(
        client_id="mars_app_" + random.token_urlsafe(18),
        owner_id=None,
        name=name,
        client_type="public",
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        scopes=" ".join(sorted(set(scopes))),
        grant_types=sorted(values["grant_types"]),
        first_party=True,
        access_token_format=access_token_format,
    )
    _add(app)
    return app


def set_resources(app: OAuthClient, resources: list[str]) -> None:
    """The organisation's services ``app`` may ask tokens for (RFC 8707): the operator's
    choice, among ``MARS_AUTH__RESOURCES``. Committed, audited."""
    declared = set(plugin_settings("auth")["resources"])
    unknown = [resource for resource in resources if resource not in declared]
    if unknown:
        raise ValidationFailed({"resources": [f"{unknown[0]!r} is not in MARS_AUTH__RESOURCES."]})
    app.resources = sorted(set(resources))
    audit("auth.app_resources_set", target=app.id, client_id=app.client_id, resources=app.resources)
    db.session.commit()


def by_client_id(client_id: str | None) -> OAuthClient | None:
    """The app with this ``client_id``, or ``None``."""
    if not client_id:
        return None
    return db.session.scalar(sa.select(OAuthClient).where(OAuthClient.client_id == client_id))


def all_apps() -> list[OAuthClient]:
    """Every app, first-party ones first (for operators)."""
    return list(
        db.session.scalars(
            sa.select(OAuthClient).order_by(
                OAuthClient.first_party.desc(), OAuthClient.created_at, OAuthClient.id
            )
        )
    )


def list_apps(owner: User) -> list[OAuthClient]:
    return list(
        db.session.scalars(
            sa.select(OAuthClient)
            .where(OAuthClient.owner_id == owner.id)
            .order_by(OAuthClient.created_at, OAuthClient.id)
        )
    )


def get_app(owner: User, app_id: str) -> OAuthClient:
    app = db.session.get(OAuthClient, app_id)
    if app is None or app.owner_id != owner.id:
        raise NotFound(f"No app {app_id!r}.")
    return app


def update_app(app: OAuthClient, changes: dict[str, Any], issuer: Actor | None = None) -> None:
    """Change ``app`` for ``issuer``.

    Widening its scopes needs the new scopes; changing where its codes go or how it gets
    tokens (``redirect_uris``, ``grant_types``) needs every scope the app may ask for: either
    hands whoever controls the change the app's tokens. A name alone needs nothing more.
    """
    if issuer is not None:
        if changes.keys() & {"redirect_uris", "grant_types"}:
            check_issuance(issuer, {*app.scopes.split(), *changes.get("scopes", ())})
        elif "scopes" in changes:
            check_issuance(issuer, set(changes["scopes"]) - set(app.scopes.split()))
    merged = {
        "redirect_uris": app.redirect_uris,
        "grant_types": app.grant_types,
        "scopes": app.scopes.split(),
        **changes,
    }
    _check(merged, app.client_type)
    if "name" in changes:
        app.name = changes["name"]
    if "redirect_uris" in changes:
        app.redirect_uris = list(changes["redirect_uris"])
    if "grant_types" in changes:
        app.grant_types = sorted(set(changes["grant_types"]))
    if "scopes" in changes:
        app.scopes = " ".join(sorted(set(changes["scopes"])))
    if "access_token_format" in changes:
        app.access_token_format = changes["access_token_format"]
    audit("auth.app_updated", target=app.id, client_id=app.client_id, changes=changes)
    db.session.commit()


def rotate_secret(app: OAuthClient, issuer: Actor | None = None) -> str:
    """A new secret; the current one keeps working for ``client_secret_grace_minutes``.

    :param issuer: the credential asking: it must have every scope the app may ask for.
    """
    if app.client_type != "confidential":
        raise Conflict("A public app has no secret to rotate.")
    if issuer is not None:
        check_issuance(issuer, app.scopes.split())
    grace = dt.timedelta(minutes=plugin_settings("auth")["client_secret_grace_minutes"])
    app.previous_secret_digest = app.secret_digest
    app.previous_secret_expires_at = utcnow() + grace
    audit(
        "auth.app_secret_rotated",
        target=app.id,
        client_id=app.client_id,
        previous_secret_valid_until=app.previous_secret_expires_at,
    )
    secret = _new_secret(app)
    db.session.commit()
    return secret


def delete_app(app: OAuthClient, *, commit: bool = True) -> None:
    """Delete the app; every token and code it holds stops working."""
    revoked = db.session.execute(
        sa.update(OAuthToken)
        .where(OAuthToken.client_id == app.client_id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    audit(
        "auth.app_deleted",
        target=app.id,
        client_id=app.client_id,
        name=app.name,
        tokens_revoked=revoked,
        personal_access_tokens_revoked=tokens.revoke_issued_by(app.client_id),
    )
    db.session.execute(
        sa.delete(AuthorizationCode).where(AuthorizationCode.client_id == app.client_id)
    )
    db.session.delete(app)
    if commit:
        db.session.commit()
