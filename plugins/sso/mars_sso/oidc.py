"""Signing in at an OpenID Connect provider, with authlib's client: discovery, the
authorization code with PKCE (S256), ``state``, ``nonce``, and the ID token's signature and
claims checked against the provider's published keys (``iss``, ``aud``, ``exp``, ``iat``,
``nonce``, ``at_hash``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from joserfc.errors import JoseError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

#: how long a provider's discovery document (and its keys) is kept before asking again
METADATA_SECONDS = 3600
TIMEOUT_SECONDS = 10
#: how far the provider's clock may be from MARS's, for ``auth_time``
LEEWAY_SECONDS = 120


class ProviderError(Exception):
    """The provider's answer cannot sign anyone in; the message is for the person."""


class _Client(OAuth2Mixin, OpenIDMixin, BaseApp):
    """authlib's OpenID Connect client, without a web framework's session: the plugin keeps
    ``state``, ``nonce`` and the PKCE verifier in its own table."""

    client_cls = OAuth2Session


_clients: dict[tuple[str, str, str], _Client] = {}
_lock = threading.Lock()


def _client(provider: Mapping[str, Any]) -> _Client:
    key = (provider["name"], provider["issuer"], provider["client_id"])
    with _lock:
        client = _clients.get(key)
        loaded = client.server_metadata.get("_loaded_at", 0) if client is not None else 0
        if client is None or time.time() - loaded > METADATA_SECONDS:
            secret = provider.get("client_secret")
            client = _clients[key] = _Client(
                None,
                name=provider["name"],
                client_id=provider["client_id"],
                client_secret=secret,
                server_metadata_url=provider["issuer"].rstrip("/")
                + "/.well-known/openid-configuration",
                client_kwargs={
                    "scope": " ".join(provider["scopes"]),
                    "code_challenge_method": "S256",
                    "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                    "default_timeout": TIMEOUT_SECONDS,
                },
            )
        return client


#: what authlib and requests raise for an answer that is not what a provider sends
BROKEN = (requests.RequestException, ValueError, KeyError, TypeError, RuntimeError)


def _metadata(provider: Mapping[str, Any]) -> dict[str, Any]:
    if not provider["issuer"].startswith("https://") and current_app.config["MARS"]["ENV"] == (
        "production"
    ):
        raise ProviderError(f"{provider['label']} is not set up correctly (it is not https).")
    try:
        metadata: dict[str, Any] = _client(provider).load_server_metadata()
    except BROKEN as error:
        raise ProviderError(
            f"{provider['label']} could not be reached. Try again later."
        ) from error
    # OpenID Connect Discovery 1.0, section 4.3: the issuer is the one configured, exactly.
    if metadata.get("issuer") != provider["issuer"]:
        raise ProviderError(f"{provider['label']} is not set up correctly (its issuer differs).")
    return metadata


def authorization_url(
    provider: Mapping[str, Any], redirect_uri: str, state: str, *, fresh: bool = False
) -> tuple[str, str, str]:
    """(the address to send the browser to, its nonce, its PKCE code verifier). ``fresh``:
    the person must sign in again at the provider (``prompt=login``)."""
    _metadata(provider)
    extra = {"prompt": "login"} if fresh else {}
    try:
        made = _client(provider).create_authorization_url(redirect_uri, state=state, **extra)
    except BROKEN as error:
        raise ProviderError(f"{provider['label']} is not set up correctly.") from error
    return made["url"], made["nonce"], made["code_verifier"]


def identity(
    provider: Mapping[str, Any],
    code: str,
    redirect_uri: str,
    nonce: str,
    code_verifier: str,
    *,
    signed_in_since: dt.datetime | None = None,
) -> dict[str, Any]:
    """The validated claims of the person an authorization code is for: the ID token's,
    completed from UserInfo when it lacks the address or a claim a role rule reads.
    ``signed_in_since``: the provider must have signed them in since then (``auth_time``)."""
    _metadata(provider)
    client = _client(provider)
    wanted = {provider["email_claim"], *(rule["claim"] for rule in provider["roles"])}
    try:
        token = client.fetch_access_token(redirect_uri, code=code, code_verifier=code_verifier)
        if "id_token" not in token:
            raise ProviderError(f"{provider['label']} did not say who you are (no ID token).")
        claims = dict(client.parse_id_token(token, nonce=nonce))
        if not wanted <= claims.keys() and "userinfo_endpoint" in client.server_metadata:
            more = dict(client.userinfo(token=token))
            if more.get("sub") == claims["sub"]:  # OpenID Connect Core 5.3.2
                claims = more | claims
    except ProviderError:
        raise
    except (AuthlibBaseError, JoseError) as error:
        raise ProviderError(
            f"{provider['label']} sent a sign-in MARS cannot accept ({_name(error)})."
        ) from error
    except BROKEN as error:
        raise ProviderError(
            f"{provider['label']} could not be reached. Try again later."
        ) from error
    if not isinstance(claims.get("sub"), str) or not 0 < len(claims["sub"]) <= 255:
        raise ProviderError(f"{provider['label']} sent a sign-in MARS cannot accept (sub).")
    if signed_in_since is not None:
        auth_time = claims.get("auth_time")
        earliest = signed_in_since.timestamp() - LEEWAY_SECONDS
        if not isinstance(auth_time, int | float) or auth_time < earliest:
            raise ProviderError(
                f"{provider['label']} did not ask you to sign in again, as the app wants."
            )
    return claims


def _name(error: Exception) -> str:
    return str(getattr(error, "error", "") or type(error).__name__)
