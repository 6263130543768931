"""The OAuth 2 authorization server: authlib's machinery with MARS's stricter rules.

authlib 1.9's defaults are not safe enough, so this module overrides them:

- PKCE is required from *every* client, confidential ones included, and only ``S256`` is
  accepted (authlib accepts ``plain`` and demands PKCE from public clients only);
- refresh tokens are rotated on every use, and a replayed one revokes its whole family;
- an authorization code used twice revokes every token issued from it;
- codes, tokens and client secrets are stored only as digests (``secrets.digest``);
- only the ``authorization_code``, ``refresh_token`` and ``client_credentials`` grants exist;
- failed client authentications are throttled (``client_auth``);
- an unknown ``token_type_hint`` is ignored, as RFC 7009 and RFC 7662 say, not refused.

authlib logs issued tokens at DEBUG level: :func:`build_server` raises the level of its
loggers so that no secret can reach a log.

Transactions: authlib runs each OAuth request and calls the hooks below as it goes, so no
single service can own the transaction. The functions at the end of this module (what the
views in ``oauth_views`` call) make each request one unit of work: the consent page's
decision is committed with the redirect authlib builds; what the token, revocation and
introspection endpoints wrote is committed on a 200 and rolled back otherwise, as authlib
answers a refusal with a response, not an exception. The hooks commit only what must
outlive a refusal, each one saying why, and :mod:`mars_server.auth.client_auth` commits
the count of a failed client authentication.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import current_app, g
from flask import request as http_request

from mars_server import plugin_settings, public_url
from mars_server.auth import accounts, apps, client_auth, consents, secrets, signing_keys
from mars_server.auth.models import AuthorizationCode, OAuthClient, OAuthToken, User
from mars_server.db import db, new_id, utcnow
from mars_server.events import audit
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from authlib.oauth2.rfc6749 import OAuth2Request
    from flask import Flask, Response

log = logging.getLogger(__name__)

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
#: what a public client uses: no secret, the client_id in the body.
PUBLIC_AUTH_METHOD = "none"
#: RFC 7636 section 4.1: 43 to 128 characters.
VERIFIER_LENGTH = (43, 128)


def declared_scopes() -> dict[str, str]:
    return dict(mars_state().scopes)


def _now() -> dt.datetime:
    return utcnow()


LOOPBACK_IPS = ("127.0.0.1", "[::1]")


def loopback_without_port(uri: str) -> str | None:
    """``http://127.0.0.1:PORT/rest`` as ``http://127.0.0.1/rest`` (or ``[::1]``); ``None``
    for any other address, one without a port included."""
    if not uri.startswith("http://"):
        return None
    netloc = uri[len("http://") :].split("/", 1)[0].split("?", 1)[0]
    host, colon, port = netloc.rpartition(":")
    if not colon or host not in LOOPBACK_IPS or not port.isdigit() or len(port) > 5:
        return None
    return f"http://{host}{uri[len('http://') + len(netloc) :]}"


class Client(ClientMixin):
    """An :class:`OAuthClient` row, as authlib sees a client."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id

    @property
    def is_confidential(self) -> bool:
        return self.row.client_type == "confidential"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # Never guessed: every authorization request must name its redirect URI.
        return None

    def allowed_scopes(self) -> set[str]:
        return set(self.row.scopes.split()) & set(declared_scopes())

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant: all of the requested one, or ``None`` (``invalid_scope``)."""
        allowed = self.allowed_scopes()
        if not scope:  # everything the app may have, but OpenID Connect only when asked for
            return " ".join(sorted(allowed - OPENID_SCOPES)) or None
        requested = set(scope.split())
        if not requested <= allowed:
            return None
        return " ".join(sorted(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string comparison: no prefix, case, slash, query or port leeway, but one.

        A native app (a public client) that registered a loopback IP address without a port,
        ``http://127.0.0.1/callback`` or ``http://[::1]/callback``, may come back on any
        port: it listens on whichever the system gives it (RFC 8252 section 7.3). Everything
        else in the address must still match, and ``localhost`` gets no such leeway.
        """
        registered = self.row.redirect_uris
        if any(hmac.compare_digest(redirect_uri, uri) for uri in registered):
            return True
        if self.is_confidential:
            return False
        portless = loopback_without_port(redirect_uri)
        return portless is not None and any(
            hmac.compare_digest(portless, uri) for uri in registered
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.is_confidential:
            return False
        candidate = secrets.digest(client_secret)
        row = self.row
        if row.secret_digest and hmac.compare_digest(candidate, row.secret_digest):
            return True
        return bool(
            row.previous_secret_digest
            and row.previous_secret_expires_at
            and row.previous_secret_expires_at > _now()
            and hmac.compare_digest(candidate, row.previous_secret_digest)
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_confidential:
            return method in CONFIDENTIAL_AUTH_METHODS
        return method == PUBLIC_AUTH_METHOD

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and not self.is_confidential:
            return False
        return grant_type in GRANT_TYPES and grant_type in self.row.grant_types


def query_client(client_id: str | None) -> Client | None:
    row = apps.by_client_id(client_id)
    return Client(row) if row is not None else None


@dataclass
class Code:
    """An :class:`AuthorizationCode` row, as authlib sees a code."""

    row: AuthorizationCode

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    # OpenID Connect (authlib's AuthorizationCodeMixin)
    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int | None:
        return int(self.row.auth_time.timestamp()) if self.row.auth_time else None

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return ["pwd"] if self.row.auth_time else None


def user_claims(user: User, scope: str) -> dict[str, Any]:
    """What an ID token and the UserInfo endpoint say of ``user`` for ``scope``: ``sub``, the
    account's id (stable, never the e-mail address), and the claims of ``profile`` and
    ``email`` only when granted."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims["name"] = user.display_name or None
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.status != "pending"
    return {name: value for name, value in claims.items() if value is not None}


class MarsOpenIDCode(OpenIDCode):
    """OpenID Connect on the authorization code flow: with ``openid`` granted, the token
    response carries an ``id_token`` signed with MARS's current key
    (:mod:`mars_server.auth.signing_keys`)."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # A nonce an app sent before is refused: a replayed authorization request.
        return (
            db.session.scalar(
                sa.select(AuthorizationCode.id).where(
                    AuthorizationCode.client_id == request.payload.client_id,
                    AuthorizationCode.nonce == nonce,
                )
            )
            is not None
        )

    def get_client_algorithm(self, client: Client) -> str:
        return signing_keys.ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": signing_keys.ALG, "kid": signing_keys.current().id, "typ": "JWT"}

    def resolve_client_private_key(self, client: Client) -> Any:
        return signing_keys.private_key(signing_keys.current())

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(utcnow().timestamp())
        return {
            "iss": public_url(),
            "aud": client.client_id,
            "iat": now,
            "exp": now + 60 * plugin_settings("auth")["id_token_minutes"],
        }

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        # authlib's would add an ``auth_time`` of now when the code has none: MARS's has one.
        return self.get_client_claims(request.client)

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        return user_claims(user, scope)


class Token(TokenMixin):
    """An :class:`OAuthToken` row found by its access token (``kind="access"``) or its
    refresh token (``kind="refresh"``)."""

    def __init__(self, row: OAuthToken, kind: str) -> None:
        self.row = row
        self.kind = kind

    def check_client(self, client: Client) -> bool:
        return hmac.compare_digest(self.row.client_id, client.client_id)

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_at(self) -> dt.datetime | None:
        if self.kind == "access":
            return self.row.access_expires_at
        return self.row.refresh_expires_at

    def get_expires_in(self) -> int:
        expires_at = self.get_expires_at()
        return max(0, int((expires_at - _now()).total_seconds())) if expires_at else 0

    def is_expired(self) -> bool:
        expires_at = self.get_expires_at()
        return expires_at is None or expires_at <= _now()

    def is_revoked(self) -> bool:
        if self.row.revoked_at is not None:
            return True
        return self.kind == "refresh" and self.row.rotated_at is not None


def find_token(value: str, hint: str | None = None) -> Token | None:
    """The token whose access or refresh token is ``value`` (the hint only orders the look-up)."""
    value_digest = secrets.digest(value)
    kinds = ("refresh", "access") if hint == "refresh_token" else ("access", "refresh")
    for kind in kinds:
        column = OAuthToken.access_digest if kind == "access" else OAuthToken.refresh_digest
        row = db.session.scalar(sa.select(OAuthToken).where(column == value_digest))
        if row is not None:
            return Token(row, kind)
    return None


def revoke_families(client_id: str, family_ids: list[str]) -> int:
    """Revoke every token of these families that ``client_id`` holds; how many were live."""
    if not family_ids:
        return 0
    result = db.session.execute(
        sa.update(OAuthToken)
        .where(
            OAuthToken.client_id == client_id,
            OAuthToken.family_id.in_(family_ids),
            OAuthToken.revoked_at.is_(None),
        )
        .values(revoked_at=_now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def revoke_family(family_id: str | None) -> int:
    """Revoke every token of a family; return how many were still live."""
    if not family_id:
        return 0
    result = db.session.execute(
        sa.update(OAuthToken)
        .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _user_for(user_id: str | None) -> User | None:
    user = db.session.get(User, user_id) if user_id else None
    if user is None or user.status != "active" or user.must_change_password:
        return None
    return user


# --- PKCE: S256 only, from every client ---------------------------------------------------


class S256CodeChallenge(CodeChallenge):
    """RFC 7636 as RFC 9700 wants it: required from every client, ``S256`` only."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "Send 'code_challenge_method=S256': nothing else is accepted."
            )
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        code = grant.request.authorization_code
        if code is None or code.code_challenge_method != "S256" or not code.code_challenge:
            raise InvalidGrantError("The code was not issued with an S256 challenge.")
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


# --- Grants ---------------------------------------------------------------------------------


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, PUBLIC_AUTH_METHOD]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        payload = request.payload
        seconds = plugin_settings("auth")["authorization_code_seconds"]
        db.session.add(
            AuthorizationCode(
                digest=secrets.digest(code),
                client_id=request.client.client_id,
                user_id=request.user.id,
                redirect_uri=payload.redirect_uri,
                scope=request.scope,
                code_challenge=payload.data["code_challenge"],
                code_challenge_method=payload.data["code_challenge_method"],
                expires_at=_now() + dt.timedelta(seconds=seconds),
                # Chosen now, so a second use can find (and revoke) what the first one got.
                family_id=(family_id := new_id("fam")),
                nonce=payload.data.get("nonce"),
                resources=requested_resources(request.client) or None,
                # When the user signed in on the page (the view puts it here), for auth_time.
                auth_time=g.get("mars_auth_time"),
            )
        )
        # The browser's page session keeps it: signing out there revokes what it got.
        g.mars_oauth_family = family_id
        accounts.audit_as(
            request.user.id,
            "auth.app_authorized",
            target=request.client.row.id,
            client_id=request.client.client_id,
            scope=request.scope,
        )  # committed with the redirect that carries the code (:func:`approve`)

    def generate_authorization_code(self) -> str:
        return secrets.new_opaque_token()

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        row = db.session.scalar(
            sa.select(AuthorizationCode).where(AuthorizationCode.digest == secrets.digest(code))
        )
        if row is None or not hmac.compare_digest(row.client_id, client.client_id):
            return None
        # Claimed in one statement: of two concurrent uses, exactly one wins.
        claimed = db.session.execute(
            sa.update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=_now())
        ).rowcount  # type: ignore[attr-defined]
        if not claimed:
            revoked = revoke_family(row.family_id)
            audit(
                "auth.token_revoked",
                target=row.family_id,
                kind="oauth_family",
                reason="authorization_code_replayed",
                client_id=row.client_id,
                user_id=row.user_id,
                tokens_revoked=revoked,
            )
            db.session.commit()  # kept though authlib answers invalid_grant (rolled back)
            log.warning(
                "authorization code used twice; %d token(s) of its family revoked",
                revoked,
                extra={"client_id": row.client_id, "family_id": row.family_id},
            )
            return None
        # The claim is kept whatever follows: a code is used once, even by a failed exchange.
        db.session.commit()
        if row.expires_at <= _now():
            return None
        g.mars_code_resources = row.resources  # what the token may be for (RFC 8707)
        return Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Already marked used when it was claimed; kept to recognise a second use."""

    def authenticate_user(self, authorization_code: Code) -> User | None:
        return _user_for(authorization_code.row.user_id)


class RotatingRefreshTokenGrant(grants.RefreshTokenGrant):
    """Every use returns a new refresh token; using an old one revokes the family."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, PUBLIC_AUTH_METHOD]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = find_token(refresh_token, "refresh_token")
        if token is None or token.kind != "refresh":
            return None
        if token.row.rotated_at is not None:
            self._reuse_detected(token.row)
            return None
        if token.is_revoked() or token.is_expired():
            return None
        g.mars_refresh_resources = token.row.resources  # what the new token may be for
        return token

    def authenticate_user(self, refresh_token: Token) -> User | None:
        return _user_for(refresh_token.row.user_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        rotated = db.session.execute(
            sa.update(OAuthToken)
            .where(
                OAuthToken.id == refresh_token.row.id,
                OAuthToken.rotated_at.is_(None),
                OAuthToken.revoked_at.is_(None),
            )
            .values(rotated_at=_now())
            # A rotated grant's access token still checks the same (token_cache.py).
            .execution_options(mars_auth_cache="keep")
        ).rowcount  # type: ignore[attr-defined]
        if not rotated:  # another request rotated it meanwhile: a replay
            db.session.rollback()
            self._reuse_detected(refresh_token.row)
            raise InvalidGrantError()

    @staticmethod
    def _reuse_detected(row: OAuthToken) -> None:
        revoked = revoke_family(row.family_id)
        audit(
            "auth.token_revoked",
            target=row.id,
            kind="oauth_family",
            reason="refresh_token_replayed",
            client_id=row.client_id,
            user_id=row.user_id,
            family_id=row.family_id,
            tokens_revoked=revoked,
        )
        db.session.commit()  # kept though authlib answers invalid_grant (rolled back)
        log.warning(
            "refresh token replayed; %d token(s) of its family revoked",
            revoked,
            extra={"client_id": row.client_id, "family_id": row.family_id},
        )


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS


# --- Tokens ---------------------------------------------------------------------------------


class InvalidTargetError(OAuth2Error):
    """RFC 8707: a ``resource`` MARS does not issue tokens for."""

    error = "invalid_target"


def requested_resources(client: Client) -> list[str]:
    """The ``resource`` parameters of this request (RFC 8707): each must be one of the
    organisation's services (``MARS_AUTH__RESOURCES``) that the operator allowed ``client``
    (``mars apps resources``); else :class:`InvalidTargetError`."""
    resources = http_request.values.getlist("resource")
    allowed = set(plugin_settings("auth")["resources"]) & set(client.row.resources or ())
    unknown = [resource for resource in resources if resource not in allowed]
    if unknown:
        raise InvalidTargetError(f"This app gets no tokens for {unknown[0][:200]!r}.")
    return sorted(set(resources))


def own_resource() -> str:
    """MARS's API as a resource: the audience of a JWT access token that names none."""
    return public_url("/api")


def _audience(grant_type: str, client: Client) -> list[str] | None:
    """The services an access token is for (``None``: MARS itself). A code's or a refresh
    token's are those its authorization was for; a request may narrow them, never widen."""
    asked = requested_resources(client)
    if grant_type == "authorization_code":
        granted = g.pop("mars_code_resources", None)
    elif grant_type == "refresh_token":
        granted = g.pop("mars_refresh_resources", None)
    else:  # client_credentials: the app's own, as the operator allowed them
        return asked or None
    if asked and not set(asked) <= set(granted or ()):
        raise InvalidTargetError("A token may be for the services its authorization was for.")
    return asked or granted or None


def audience_of(resources: list[str] | None) -> list[str]:
    return resources or [own_resource()]


def _jwt_access_token(
    client: Client, user: User | None, scope: str, seconds: int, resources: list[str] | None
) -> str:
    """RFC 9068: an access token another service checks offline with MARS's published keys."""
    now = int(_now().timestamp())
    audience = audience_of(resources)
    claims = {
        "iss": public_url(),
        "sub": user.id if user is not None else client.client_id,
        "aud": audience[0] if len(audience) == 1 else audience,
        "client_id": client.client_id,
        "scope": scope,
        "iat": now,
        "exp": now + seconds,
        "jti": new_id("jti"),
    }
    return signing_keys.sign(claims, typ="at+jwt")


def generate_token(
    grant_type: str,
    client: Client,
    user: User | None = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    granted = client.get_allowed_scope(scope)
    if granted is None:
        raise InvalidScopeError()
    minutes = plugin_settings("auth")["access_token_minutes"]
    seconds = expires_in or minutes * 60
    resources = _audience(grant_type, client)
    if client.row.access_token_format == "jwt":  # noqa: S105  (a format, not a secret)
        access_token = _jwt_access_token(client, user, granted, seconds, resources)
    elif resources:
        raise InvalidTargetError("Only an app set to JWT access tokens gets them for services.")
    else:
        access_token = secrets.new_opaque_token()
    g.mars_token_resources = resources  # kept with the token (save_token)
    token = {
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": seconds,
        "scope": granted,
    }
    if include_refresh_token and user is not None:
        token["refresh_token"] = secrets.new_opaque_token()
    return token


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    now = _now()
    if request.authorization_code is not None:
        family_id = request.authorization_code.row.family_id
    elif request.refresh_token is not None:
        family_id = request.refresh_token.row.family_id
    else:
        family_id = new_id("fam")
    refresh = token.get("refresh_token")
    days = plugin_settings("auth")["refresh_token_days"]
    user_id = request.user.id if request.user is not None else None
    row = OAuthToken(
        client_id=request.client.client_id,
        user_id=user_id,
        scope=token["scope"],
        access_digest=secrets.digest(token["access_token"]),
        refresh_digest=secrets.digest(refresh) if refresh else None,
        family_id=family_id,
        issued_at=now,
        access_expires_at=now + dt.timedelta(seconds=token["expires_in"]),
        refresh_expires_at=now + dt.timedelta(days=days) if refresh else None,
        resources=g.pop("mars_token_resources", None),
    )
    db.session.add(row)
    db.session.flush()
    # Attributed as requests with the token will be: to its user, or to the app itself.
    accounts.audit_as(
        user_id or request.client.client_id,
        "auth.token_created",
        target=row.id,
        kind="oauth",
        grant_type=request.payload.grant_type,
        client_id=request.client.client_id,
        user_id=user_id,
        scope=row.scope,
        family_id=family_id,
        with_refresh_token=refresh is not None,
    )


# --- Revocation and introspection -----------------------------------------------------------


class IgnoreUnknownHint:
    """RFC 7009 section 2.1 and RFC 7662 section 2.1: ``token_type_hint`` only speeds up the
    look-up, and a server that does not know it searches every kind of token. authlib
    refuses an unknown hint (``unsupported_token_type``); only ``token`` is required here."""

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        if "token" not in request.form:
            raise InvalidRequestError("Missing 'token'.")


class MarsRevocationEndpoint(IgnoreUnknownHint, RevocationEndpoint):
    """RFC 7009. Revoking either token of a row revokes its whole family (RFC 7009 section 2.1:
    revoking a refresh token should revoke the access tokens of the same grant)."""

    CLIENT_AUTH_METHODS = [*CONFIDENTIAL_AUTH_METHODS, PUBLIC_AUTH_METHOD]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        revoked = revoke_family(token.row.family_id)
        row = token.row
        accounts.audit_as(
            row.user_id or row.client_id,
            "auth.token_revoked",
            target=row.id,
            kind="oauth_family",
            reason="revoked_by_client",
            client_id=row.client_id,
            user_id=row.user_id,
            family_id=row.family_id,
            tokens_revoked=revoked,
        )  # committed with authlib's answer (:func:`endpoint_response`)


class MarsIntrospectionEndpoint(IgnoreUnknownHint, IntrospectionEndpoint):
    """RFC 7662, for confidential clients, about their own tokens only."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        row = token.row
        expires_at = token.get_expires_at()
        payload: dict[str, Any] = {
            "active": True,
            "client_id": row.client_id,
            "scope": row.scope,
            "iat": int(row.issued_at.timestamp()),
            "exp": int(expires_at.timestamp()) if expires_at else None,
        }
        if token.kind == "access":
            payload["token_type"] = "Bearer"  # noqa: S105
        if row.user_id:
            payload["sub"] = row.user_id
        return payload


class MarsAuthorizationServer(AuthorizationServer):
    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> Client:
        """authlib's client authentication, throttled per address and per confidential
        client (:mod:`mars_server.auth.client_auth`)."""

        def is_confidential(client_id: str) -> bool:
            client = query_client(client_id)
            return client is not None and client.is_confidential

        return client_auth.authenticate(
            functools.partial(super().authenticate_client, request, methods, endpoint),
            request=request,
            # authlib's request does not carry the address; Flask's does (after ProxyFix).
            address=http_request.remote_addr,
            is_confidential=is_confidential,
        )


def build_server(app: Flask) -> AuthorizationServer:
    """The authorization server of ``app``, kept at ``app.extensions["mars_oauth"]``."""
    for name in ("authlib", "authlib.oauth2", "authlib.integrations"):
        # authlib logs issued tokens and client ids at DEBUG: never let that through.
        logging.getLogger(name).setLevel(logging.INFO)
    server = MarsAuthorizationServer()
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_token_generator("default", generate_token)
    server.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), MarsOpenIDCode()]
    )
    server.register_grant(RotatingRefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(MarsRevocationEndpoint)
    server.register_endpoint(MarsIntrospectionEndpoint)
    server.scopes_supported = None  # checked per client against the declared scopes
    app.extensions["mars_oauth"] = server
    return server


def server() -> AuthorizationServer:
    return current_app.extensions["mars_oauth"]


def metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 server metadata."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        # OpenID Connect RP-Initiated Logout's name for it
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "scopes_supported": sorted(declared_scopes()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [*CONFIDENTIAL_AUTH_METHODS, PUBLIC_AUTH_METHOD],
        "revocation_endpoint_auth_methods_supported": [
            *CONFIDENTIAL_AUTH_METHODS,
            PUBLIC_AUTH_METHOD,
        ],
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
        "authorization_response_iss_parameter_supported": False,
    }


#: OpenID Connect's scopes: granted only when asked for by name
OPENID_SCOPES = frozenset({"openid", "profile", "email"})
#: What ID tokens and UserInfo may say (OpenID Connect Core, section 5.1)
CLAIMS_SUPPORTED = [
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr",
    "name", "updated_at", "email", "email_verified",
]  # fmt: skip


def openid_metadata(issuer: str) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0's provider metadata: RFC 8414's, and what OpenID Connect
    adds (``userinfo_endpoint``, ``jwks_uri``, subject types, signing algorithms, claims)."""
    return {
        **metadata(issuer),
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing_keys.ALG],
        "claims_supported": CLAIMS_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


# --- Each OAuth request, one unit of work (see the module's docstring) -------------------------


def approve(grant: grants.AuthorizationCodeGrant, user: User, *, remember: bool = True) -> Response:
    """``user`` allows the app of ``grant`` what it asks for: authlib's redirect with a new
    code (audited by :meth:`AuthorizationCodeGrant.save_authorization_code`); ``remember``
    records the consent (:func:`consents.remember`), which the next request then skips.
    Committed."""
    grant.request.user = user
    if remember:
        consents.remember(user, grant.client.row, grant.request.scope)
    response: Response = server().create_authorization_response(grant_user=user, grant=grant)
    db.session.commit()
    return response


def deny(grant: grants.AuthorizationCodeGrant, user: User) -> Response:
    """``user`` refuses the app of ``grant``: authlib's redirect with ``access_denied``; the
    refusal is audited and committed."""
    grant.request.user = None
    accounts.audit_as(
        user.id,
        "auth.app_authorization_denied",
        target=grant.client.row.id,
        client_id=grant.client.client_id,
        scope=grant.request.scope,
    )
    response: Response = server().create_authorization_response(grant_user=None, grant=grant)
    db.session.commit()
    return response


def token_response() -> Response:
    """``/oauth/token``: authlib's answer; the tokens it issued are committed with it."""
    return _committed_when_ok(lambda: server().create_token_response())


def endpoint_response(name: str) -> Response:
    """The answer of authlib's endpoint ``name`` (``revocation``, ``introspection``)."""
    return _committed_when_ok(lambda: server().create_endpoint_response(name))


def _committed_when_ok(respond: Callable[[], Response]) -> Response:
    """authlib answers a refused request with a response, not an exception: what a 200 wrote
    is committed, what any other answer wrote is rolled back. An :class:`OAuth2Error`
    raised before authlib could answer (an insecure transport) rolls back too."""
    try:
        response = respond()
    except OAuth2Error:
        db.session.rollback()
        raise
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return response
