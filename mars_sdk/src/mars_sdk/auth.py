"""Credentials for :class:`~mars_sdk.MarsClient`.

- :class:`TokenAuth`: a personal access token (``mars_pat_...``) or any bearer token;
- :class:`ClientCredentials`: an OAuth app acting for itself; it fetches its token, and a
  new one before that expires;
- :class:`RefreshTokenAuth`: a user's tokens from
  :class:`~mars_sdk.oauth.AuthorizationCodeFlow`, refreshed (and rotated) when they expire.

No credential is ever logged: their ``repr`` hides the secrets.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mars_sdk.oauth import AuthorizationCodeFlow, OAuthTokens, TokenEndpoint

#: Renew a token this many seconds before it expires, so none expires in flight.
EXPIRY_LEEWAY = 30.0


class Auth:
    """The credentials a client sends. Subclass it for another kind of token."""

    def authorization(self, endpoint: TokenEndpoint) -> str:
        """The ``Authorization`` header for the next request."""
        raise NotImplementedError

    def renew(self, endpoint: TokenEndpoint, *, rejected: str | None = None) -> bool:
        """MARS answered 401 to ``rejected`` (the ``Authorization`` header it was sent): get
        fresh credentials if possible; ``True`` to try once more.

        When another thread has renewed them since ``rejected`` was sent, there is nothing
        to fetch: answer ``True`` at once.
        """
        return False


class TokenAuth(Auth):
    """A bearer token that does not change: a personal access token, usually."""

    def __init__(self, token: str) -> None:
        self._token = token

    def authorization(self, endpoint: TokenEndpoint) -> str:
        return f"Bearer {self._token}"

    def __repr__(self) -> str:
        return "TokenAuth(token='***')"


class ClientCredentials(Auth):
    """An OAuth app acting for itself (the ``client_credentials`` grant).

    :param scopes: the scopes to ask for; all the app may have when ``None``.
    """

    def __init__(
        self, client_id: str, client_secret: str, *, scopes: Sequence[str] | None = None
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = list(scopes) if scopes is not None else None
        self._tokens: OAuthTokens | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret='***')"

    def authorization(self, endpoint: TokenEndpoint) -> str:
        with self._lock:
            if self._tokens is None or self._tokens.expires_within(EXPIRY_LEEWAY):
                self._tokens = self._fetch(endpoint)
            return f"Bearer {self._tokens.access_token}"

    def renew(self, endpoint: TokenEndpoint, *, rejected: str | None = None) -> bool:
        with self._lock:
            current = self._tokens
            if current is None or rejected is None or rejected == f"Bearer {current.access_token}":
                self._tokens = self._fetch(endpoint)
        return True

    def _fetch(self, endpoint: TokenEndpoint) -> OAuthTokens:
        form = {"grant_type": "client_credentials"}
        if self.scopes is not None:
            form["scope"] = " ".join(self.scopes)
        return endpoint.token(form, client_id=self.client_id, client_secret=self._client_secret)


class RefreshTokenAuth(Auth):
    """A signed-in user's tokens, refreshed before they expire and after a 401.

    MARS rotates the refresh token on every use; this keeps the newest and hands every new
    pair to ``on_refresh`` (store it: the old refresh token no longer works). Refreshes
    are serialised, because a refresh token presented twice revokes the whole sign-in.
    """

    def __init__(
        self,
        tokens: OAuthTokens,
        *,
        flow: AuthorizationCodeFlow,
        on_refresh: Callable[[OAuthTokens], None] | None = None,
    ) -> None:
        self.tokens = tokens
        self.flow = flow
        self.on_refresh = on_refresh
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RefreshTokenAuth(client_id={self.flow.client_id!r}, tokens=***)"

    def authorization(self, endpoint: TokenEndpoint) -> str:
        with self._lock:
            if self.tokens.expires_within(EXPIRY_LEEWAY) and self.tokens.refresh_token:
                self._refresh()
            return f"Bearer {self.tokens.access_token}"

    def renew(self, endpoint: TokenEndpoint, *, rejected: str | None = None) -> bool:
        with self._lock:
            if rejected is not None and rejected != f"Bearer {self.tokens.access_token}":
                return True  # refreshed by another thread since
            if not self.tokens.refresh_token:
                return False
            self._refresh()
        return True

    def _refresh(self) -> None:
        assert self.tokens.refresh_token is not None
        self.tokens = self.flow.refresh(self.tokens.refresh_token)
        if self.on_refresh is not None:
            self.on_refresh(self.tokens)
