"""OAuth 2 with MARS: the token endpoint, and authorization code + PKCE for apps.

MARS demands PKCE with S256 from every app and rotates refresh tokens on every use: a
refresh token used twice revokes the whole sign-in. So store the tokens each refresh
returns, and never refresh the same token from two places at once.

With the scope ``openid`` MARS is an OpenID Connect provider: :meth:`AuthorizationCodeFlow.
finish` checks the ID token it returns (signature with MARS's published keys, issuer,
audience, expiry, nonce, ``at_hash``) and gives its claims as ``tokens.id_claims``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mars_sdk.errors import MarsConnectionError, MarsTimeoutError, OAuthError, error_from_response

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mars_sdk.auth import RefreshTokenAuth

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - not a secret
REVOKE_PATH = "/oauth/revoke"
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: the algorithm MARS signs ID tokens with
ID_TOKEN_ALGORITHMS = ["ES256"]
#: how far the clocks of MARS and the app may differ (seconds)
CLOCK_SKEW = 60


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    """What the token endpoint answered. ``expires_at`` is a Unix time."""

    access_token: str
    expires_at: float
    scope: str = ""
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - not a secret
    #: OpenID Connect: the ID token as MARS sent it, and its claims once checked (``finish``)
    id_token: str | None = None
    id_claims: dict[str, Any] | None = None

    @classmethod
    def from_response(cls, data: dict[str, Any]) -> OAuthTokens:
        return cls(
            access_token=data["access_token"],
            expires_at=time.time() + float(data.get("expires_in") or 0),
            scope=data.get("scope") or "",
            refresh_token=data.get("refresh_token"),
            token_type=data.get("token_type") or "Bearer",
            id_token=data.get("id_token"),
        )

    def expires_within(self, seconds: float) -> bool:
        return self.expires_at - time.time() < seconds

    def __repr__(self) -> str:  # tokens are secrets: never in a log or a traceback
        return f"OAuthTokens(scope={self.scope!r}, expires_at={self.expires_at:.0f})"


class TokenEndpoint:
    """``POST /oauth/token`` (and ``/oauth/revoke``) of one MARS, with client authentication.

    A client with a secret authenticates with HTTP Basic (``client_secret_basic``); a public
    client sends its ``client_id`` in the body. Token requests are never retried: a refresh
    sent twice would revoke the sign-in.
    """

    def __init__(
        self, base_url: str, *, session: requests.Session | None = None, timeout: float = 30
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def token(
        self, form: dict[str, str], *, client_id: str, client_secret: str | None
    ) -> OAuthTokens:
        """Ask for tokens with ``form`` (``grant_type`` and its fields)."""
        return OAuthTokens.from_response(
            self._post(TOKEN_PATH, form, client_id=client_id, client_secret=client_secret)
        )

    def revoke(self, token: str, *, client_id: str, client_secret: str | None) -> None:
        """Revoke an access or refresh token, and with it its sign-in (RFC 7009)."""
        self._post(REVOKE_PATH, {"token": token}, client_id=client_id, client_secret=client_secret)

    def _post(
        self, path: str, form: dict[str, str], *, client_id: str, client_secret: str | None
    ) -> dict[str, Any]:
        auth = (client_id, client_secret) if client_secret else None
        if auth is None:
            form = {**form, "client_id": client_id}
        try:
            response = self.session.post(
                self.base_url + path,
                data=form,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise MarsTimeoutError(f"POST {path}: no answer in {self.timeout} s") from exc
        except requests.ConnectionError as exc:
            raise MarsConnectionError(f"POST {path}: {exc.__class__.__name__}") from exc
        if response.status_code >= 400:
            error = error_from_response(response, None)
            raise OAuthError(
                error.message,
                status=error.status,
                problem=error.problem,
                request_id=error.request_id,
                headers=error.headers,
            )
        if not response.content:
            return {}
        data: dict[str, Any] = response.json()
        return data


def _at_hash(access_token: str) -> str:
    """OpenID Connect's ``at_hash`` for ES256: the left half of the token's SHA-256."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def code_challenge(code_verifier: str) -> str:
    """The S256 PKCE challenge of ``code_verifier`` (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_code_verifier() -> str:
    """A random PKCE code verifier: 86 characters of ``A-Z a-z 0-9 - _``."""
    return secrets.token_urlsafe(64)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the user, and what to keep (in their session) until they come back."""

    url: str
    state: str
    code_verifier: str
    #: OpenID Connect (with ``openid``): the nonce the ID token must carry back
    nonce: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r})"


class AuthorizationCodeFlow:
    """Sign users in with authorization code + PKCE (S256).

    ::

        flow = AuthorizationCodeFlow(base_url, client_id=..., redirect_uri=..., client_secret=...)
        request = flow.start(scopes=["account:read"])  # keep request.state and .code_verifier
        # ... send the browser to request.url; MARS redirects back to redirect_uri ...
        tokens = flow.finish(request, callback_url)
        client = MarsClient(base_url, auth=flow.auth(tokens, on_refresh=save_tokens))
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        redirect_uri: str,
        client_secret: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 30,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.endpoint = TokenEndpoint(self.base_url, session=session, timeout=timeout)
        self._keys: KeySet | None = None

    def __repr__(self) -> str:
        return f"AuthorizationCodeFlow(client_id={self.client_id!r})"

    def start(
        self, scopes: Sequence[str] | None = None, *, state: str | None = None
    ) -> AuthorizationRequest:
        """A fresh authorization request: the URL to send the user to, a state, a verifier
        (and, with the scope ``openid``, a nonce)."""
        state = state or secrets.token_urlsafe(24)
        verifier = new_code_verifier()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        nonce = None
        if scopes is not None:
            query["scope"] = " ".join(scopes)
            if "openid" in scopes:
                nonce = query["nonce"] = secrets.token_urlsafe(24)
        url = f"{self.base_url}{AUTHORIZE_PATH}?{urlencode(query)}"
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier, nonce=nonce)

    def finish(self, request: AuthorizationRequest, callback_url: str) -> OAuthTokens:
        """Check the redirect MARS sent the user back with, and exchange its code.

        :raises OAuthError: the user denied, the state does not match (a forged callback),
            or the code was refused.
        """
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        if not secrets.compare_digest(query.get("state", ""), request.state):
            raise OAuthError("The callback's state does not match the request's.")
        if "error" in query:
            raise OAuthError(
                f"Authorization failed: {query['error']}",
                problem={"error": query["error"], **query},
            )
        if "code" not in query:
            raise OAuthError("The callback carries no code.")
        tokens = self.exchange(query["code"], code_verifier=request.code_verifier)
        if request.nonce is None:
            return tokens
        if tokens.id_token is None:
            raise OAuthError("MARS sent no ID token for an openid request.")
        claims = self.id_token_claims(tokens.id_token, nonce=request.nonce)
        if claims.get("at_hash") != _at_hash(tokens.access_token):
            raise OAuthError("The ID token does not belong to this access token (at_hash).")
        return replace(tokens, id_claims=claims)

    def id_token_claims(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of an ID token MARS signed for this app, checked as OpenID Connect Core
        (section 3.1.3.7) says: signature, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``.

        :raises OAuthError: any check fails.
        """
        try:
            token = self._decode(id_token)
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_SKEW,
                iss={"essential": True, "value": self.base_url},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise OAuthError(f"The ID token is not valid: {exc}") from None
        return dict(token.claims)

    def _decode(self, id_token: str) -> jwt.Token:
        try:
            return jwt.decode(id_token, self._signing_keys(), algorithms=ID_TOKEN_ALGORITHMS)
        except JoseError:
            # A key MARS made after the last look (a rotation): look once more.
            return jwt.decode(
                id_token, self._signing_keys(fresh=True), algorithms=ID_TOKEN_ALGORITHMS
            )

    def _signing_keys(self, *, fresh: bool = False) -> KeySet:
        if self._keys is None or fresh:
            session, timeout = self.endpoint.session, self.endpoint.timeout
            try:
                discovery = session.get(self.base_url + DISCOVERY_PATH, timeout=timeout)
                discovery.raise_for_status()
                keys = session.get(discovery.json()["jwks_uri"], timeout=timeout)
                keys.raise_for_status()
            except requests.RequestException as exc:
                raise MarsConnectionError(f"MARS's signing keys: {exc.__class__.__name__}") from exc
            self._keys = KeySet.import_key_set(keys.json())
        return self._keys

    def exchange(self, code: str, *, code_verifier: str) -> OAuthTokens:
        """Exchange an authorization code (within a minute of its issue, once)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        return self.endpoint.token(form, client_id=self.client_id, client_secret=self.client_secret)

    def refresh(self, refresh_token: str, *, scopes: Sequence[str] | None = None) -> OAuthTokens:
        """New tokens for a refresh token, which is then spent: keep the new refresh token."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes is not None:
            form["scope"] = " ".join(scopes)
        return self.endpoint.token(form, client_id=self.client_id, client_secret=self.client_secret)

    def revoke(self, token: str) -> None:
        """Revoke ``token`` and every token of its sign-in."""
        self.endpoint.revoke(token, client_id=self.client_id, client_secret=self.client_secret)

    def auth(
        self, tokens: OAuthTokens, *, on_refresh: Callable[[OAuthTokens], None] | None = None
    ) -> RefreshTokenAuth:
        """Credentials for :class:`~mars_sdk.MarsClient` that refresh themselves.

        :param on_refresh: called with every new pair of tokens, to store them.
        """
        from mars_sdk.auth import RefreshTokenAuth

        return RefreshTokenAuth(tokens, flow=self, on_refresh=on_refresh)
