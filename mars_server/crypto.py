"""Secrets MARS must read back (webhook signing secrets, queued mail), encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived with HKDF from
``MARS_SECRET_KEY``: a copy of the database alone reveals nothing. Secrets MARS only has to
recognise (passwords, tokens) are never stored this way: they are hashed.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

__all__ = ["InvalidToken", "open_sealed", "seal"]


@functools.lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mars-server", info=b"secrets at rest"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _current() -> Fernet:
    return _fernet(current_app.config["SECRET_KEY"])


def seal(data: bytes | str) -> str:
    """Encrypt ``data``; the result is ASCII, safe in any column."""
    raw = data.encode() if isinstance(data, str) else data
    return _current().encrypt(raw).decode("ascii")


def open_sealed(token: str) -> bytes:
    """Decrypt what :func:`seal` made; raises :class:`InvalidToken` if altered or foreign."""
    return _current().decrypt(token.encode("ascii"))
