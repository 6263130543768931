"""Secrets MARS must read back (webhook signing secrets, queued mail, replayed responses),
encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived with HKDF from
``MARS_SECRET_KEY``: a copy of the database alone reveals nothing. Secrets MARS only has to
recognise (passwords, tokens) are never stored this way: they are hashed. What MARS only
compares but that may hold a secret (a request body with a password) gets a keyed digest,
:func:`keyed_digest`, which a copy of the database cannot be searched against.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

__all__ = ["InvalidToken", "keyed_digest", "open_sealed", "seal"]


@functools.lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mars-server", info=b"secrets at rest"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@functools.lru_cache(maxsize=8)
def _digest_key(secret_key: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mars-server", info=b"keyed digests"
    ).derive(secret_key.encode())


def keyed_digest(data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under a key of its own derived from ``MARS_SECRET_KEY``: equal
    inputs give equal digests, and without the key a digest tells nothing of its input."""
    key = _digest_key(current_app.config["SECRET_KEY"])
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _current() -> Fernet:
    return _fernet(current_app.config["SECRET_KEY"])


def seal(data: bytes | str) -> str:
    """Encrypt ``data``; the result is ASCII, safe in any column."""
    raw = data.encode() if isinstance(data, str) else data
    return _current().encrypt(raw).decode("ascii")


def open_sealed(token: str) -> bytes:
    """Decrypt what :func:`seal` made; raises :class:`InvalidToken` if altered or foreign."""
    return _current().decrypt(token.encode("ascii"))
