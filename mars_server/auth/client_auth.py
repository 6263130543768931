"""OAuth client authentication at ``/oauth/token``, ``/oauth/revoke`` and ``/oauth/introspect``,
throttled as signing in is.

Failed client authentications (a wrong secret, an unknown client, no credentials, a malformed
``Authorization: Basic``) are counted per remote address, and per ``client_id`` of every
confidential app the request names (in the header or the form: authlib tries both), in
:mod:`mars_server.auth.throttle`.

- Past the per-address limit every request from that address is answered 429
  ``too_many_attempts`` with ``Retry-After``, the right secret too: that address is guessing.
- Past an app's limit, a wrong secret for it is answered 429 instead of 401, but the right
  secret still works: a ``client_id`` is public, so anyone could otherwise lock a deployed
  app out, and a 256-bit secret is not guessed by trying (the per-address limit slows
  whoever tries).
"""

from __future__ import annotations

import binascii
import logging
from typing import TYPE_CHECKING, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from mars_server import plugin_settings
from mars_server.auth import throttle
from mars_server.auth.signin import SIGNIN_FAILURES
from mars_server.db import db

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from authlib.oauth2.rfc6749 import OAuth2Request

log = logging.getLogger(__name__)

C = TypeVar("C")


class TooManyClientAuthentications(OAuth2Error):
    """429 in OAuth's format (RFC 6749 section 5.2): ``error`` and ``error_description``,
    and ``Retry-After``. RFC 6749 has no code for it; ``too_many_attempts`` says what it is."""

    error = "too_many_attempts"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed client authentications; try again in {retry_after} seconds."
        )
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


def named_client_ids(request: OAuth2Request) -> set[str] | None:
    """Every ``client_id`` the request names, in ``Authorization: Basic`` and in the body;
    ``None`` when the Basic credentials are not base64 of UTF-8 text (authlib would raise)."""
    try:
        from_header, _ = extract_basic_authorization(request.headers)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        return None
    return {name for name in (from_header, request.payload.client_id) if name}


def _limits(kind: str, values: Iterable[str], limit_key: str) -> list[throttle.Limit]:
    settings = plugin_settings("auth")
    minutes = settings["client_auth_window_minutes"]
    return [throttle.Limit.of(kind, value, settings[limit_key], minutes) for value in values]


def authenticate(
    authenticate_client: Callable[[], C],
    *,
    request: OAuth2Request,
    address: str | None,
    is_confidential: Callable[[str], bool],
) -> C:
    """``authenticate_client()`` (authlib's), unless the address is locked out; count its
    failure per address and per confidential app named (committed at once: the endpoint
    rolls back what fails). See the module's docstring for what each limit refuses."""
    by_address = _limits(
        "client-ip", [throttle.address_key(address)], "client_auth_failures_per_address"
    )
    seconds = throttle.retry_after(by_address)
    if seconds is not None:
        SIGNIN_FAILURES.labels("client_throttled").inc()
        raise TooManyClientAuthentications(seconds)
    named = named_client_ids(request)
    confidential = sorted(filter(is_confidential, named or ()))
    by_client = _limits("client", confidential, "client_auth_failures_per_client")
    try:
        if named is None:
            raise InvalidClientError(description="The Basic credentials are malformed.")
        return authenticate_client()
    except InvalidClientError:
        SIGNIN_FAILURES.labels("client_invalid").inc()
        locked = [
            limit for limit in [*by_address, *by_client] if throttle.count(limit) > limit.limit
        ]
        db.session.commit()
        if locked:
            log.warning(
                "OAuth client authentication throttled (%s)",
                ", ".join(sorted({limit.key.partition(":")[0] for limit in locked})),
            )
            raise TooManyClientAuthentications(throttle.retry_after(locked) or 1) from None
        raise
