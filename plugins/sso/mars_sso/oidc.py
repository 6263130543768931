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
from joserfc.errors import JoseError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: how long a provider's discovery document (and its keys) is kept before asking again
METADATA_SECONDS = 3600
TIMEOUT_SECONDS = 10


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


def _metadata(provider: Mapping[str, Any]) -> dict[str, Any]:
    try:
        metadata: dict[str, Any] = _client(provider).load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        raise ProviderError(
            f"{provider['label']} could not be reached. Try again later."
        ) from error
    # OpenID Connect Discovery 1.0, section 4.3: the issuer is the one configured, exactly.
    if metadata.get("issuer") != provider["issuer"]:
        raise ProviderError(f"{provider['label']} is not set up correctly (its issuer differs).")
    return metadata


def authorization_url(
    provider: Mapping[str, Any], redirect_uri: str, state: str
) -> tuple[str, str, str]:
    """(the address to send the browser to, its nonce, its PKCE code verifier)."""
    _metadata(provider)
    made = _client(provider).create_authorization_url(redirect_uri, state=state)
    return made["url"], made["nonce"], made["code_verifier"]


def identity(
    provider: Mapping[str, Any], code: str, redirect_uri: str, nonce: str, code_verifier: str
) -> dict[str, Any]:
    """The validated claims of the person an authorization code is for: the ID token's,
    completed from UserInfo when it lacks the e-mail address."""
    _metadata(provider)
    client = _client(provider)
    try:
        token = client.fetch_access_token(redirect_uri, code=code, code_verifier=code_verifier)
        if "id_token" not in token:
            raise ProviderError(f"{provider['label']} did not say who you are (no ID token).")
        claims = dict(client.parse_id_token(token, nonce=nonce))
        if provider["email_claim"] not in claims and "userinfo_endpoint" in client.server_metadata:
            more = dict(client.userinfo(token=token))
            if more.get("sub") == claims["sub"]:  # OpenID Connect Core 5.3.2
                claims = more | claims
    except ProviderError:
        raise
    except (AuthlibBaseError, JoseError) as error:
        raise ProviderError(
            f"{provider['label']} sent a sign-in MARS cannot accept ({_name(error)})."
        ) from error
    except (requests.RequestException, ValueError, KeyError) as error:
        raise ProviderError(
            f"{provider['label']} could not be reached. Try again later."
        ) from error
    return claims


def _name(error: Exception) -> str:
    return str(getattr(error, "error", "") or type(error).__name__)
