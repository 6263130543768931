"""Secret values MARS hands out: made here, shown once, kept only as digests.

Every secret has at least 128 random bits, so a SHA-256 digest is enough to store it: there
is nothing to brute-force. Personal access tokens carry a prefix and a checksum, so secret
scanners can recognise them and typos are refused without a database look-up.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PAT_PREFIX = "mars_pat_"
CLIENT_SECRET_PREFIX = "mars_cs_"  # noqa: S105  (a prefix, not a secret)
_ALPHABET = string.digits + string.ascii_letters
_PAT_RANDOM_LENGTH = 22  # 62**22 > 2**130
_CHECKSUM_LENGTH = 6


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        chars.append(_ALPHABET[remainder])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LENGTH)


def new_personal_access_token() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_PAT_RANDOM_LENGTH))
    return PAT_PREFIX + random_part + _checksum(random_part)


def is_personal_access_token(token: str) -> bool:
    """Whether ``token`` has the shape and checksum of a personal access token."""
    if not token.startswith(PAT_PREFIX):
        return False
    body = token[len(PAT_PREFIX) :]
    if len(body) != _PAT_RANDOM_LENGTH + _CHECKSUM_LENGTH or not all(
        char in _ALPHABET for char in body
    ):
        return False
    return secrets.compare_digest(_checksum(body[:_PAT_RANDOM_LENGTH]), body[_PAT_RANDOM_LENGTH:])


def token_hint(token: str) -> str:
    """The start of a token, safe to show: enough to tell tokens apart, useless to attackers."""
    return token[: len(PAT_PREFIX) + 4]


def new_opaque_token() -> str:
    """An access token, refresh token, code or e-mail link token: 256 random bits."""
    return secrets.token_urlsafe(32)


def new_client_secret() -> str:
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
