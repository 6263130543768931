"""Secrets MARS must read back (webhook signing secrets, queued mail, replayed responses,
fields plugins declare :class:`Sealed`), encrypted at rest under a keyring.

The keyring is ``MARS_ENCRYPTION_KEYS``: Fernet keys (AES-128-CBC + HMAC-SHA256, from
``cryptography``), the first encrypts and every one decrypts (``MultiFernet``). It is
separate from ``MARS_SECRET_KEY``, so either can change without the other. The entry
``derived`` stands for the key earlier versions derived from ``MARS_SECRET_KEY`` (and is the
keyring when none is set): list a new key before it, run ``mars keys rotate``, then drop it.

A sealed value is ``<key id>:<Fernet token>``, where the key id is a digest of the key that
tells nothing of it; values sealed before keyrings have no key id (and are under ``derived``).
The key id lets ``mars keys`` count, in SQL, what is still under an old key.

Secrets MARS only has to recognise (passwords, tokens) are never stored this way: they are
hashed. What MARS only compares but that may hold a secret (a request body with a password)
gets a keyed digest, :func:`keyed_digest`, which a copy of the database cannot be searched
against.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DERIVED",
    "InvalidToken",
    "Keyring",
    "Sealed",
    "generate_key",
    "key_id_of",
    "keyed_digest",
    "keyring",
    "open_sealed",
    "seal",
]

#: The keyring entry that stands for the key derived from ``MARS_SECRET_KEY``.
DERIVED = "derived"
_SEPARATOR = ":"


def _derived_key(secret_key: str) -> bytes:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mars-server", info=b"secrets at rest"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(key)


def key_id_of(key: bytes) -> str:
    """The id a sealed value carries of the key that sealed it: 12 hex digits of a digest."""
    return hashlib.sha256(b"mars key id\0" + key).hexdigest()[:12]


def generate_key() -> str:
    """A new random key for ``MARS_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def valid_key(entry: str) -> bool:
    """Whether ``entry`` may stand in ``MARS_ENCRYPTION_KEYS``: ``derived`` or a Fernet key
    (32 random bytes, URL-safe base64)."""
    if entry == DERIVED:
        return True
    try:
        return len(base64.urlsafe_b64decode(entry.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


@dataclass(frozen=True)
class Keyring:
    """The keys in order: ``ids[0]`` encrypts, every one decrypts. ``names`` are what the
    operator sees (``derived`` or the key id); the keys themselves are never shown."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    _fernets: tuple[Fernet, ...]

    @property
    def primary(self) -> str:
        return self.ids[0]

    def seal(self, raw: bytes) -> str:
        return f"{self.ids[0]}{_SEPARATOR}{self._fernets[0].encrypt(raw).decode('ascii')}"

    def open(self, value: str) -> bytes:
        key_id, separator, token = value.rpartition(_SEPARATOR)
        if not separator:  # sealed before keyrings: under the derived key, or any we hold
            return MultiFernet(list(self._fernets)).decrypt(token.encode("ascii"))
        for known, fernet in zip(self.ids, self._fernets, strict=True):
            if known == key_id:
                return fernet.decrypt(token.encode("ascii"))
        raise InvalidToken(f"sealed under key {key_id}, which is not in MARS_ENCRYPTION_KEYS")

    def reseal(self, value: str) -> str:
        """``value`` under the first key (unchanged when it already is)."""
        if value.startswith(self.ids[0] + _SEPARATOR):
            return value
        return self.seal(self.open(value))


@functools.lru_cache(maxsize=8)
def _keyring(entries: tuple[str, ...], secret_key: str) -> Keyring:
    keys = [_derived_key(secret_key) if entry == DERIVED else entry.encode() for entry in entries]
    ids = tuple(key_id_of(key) for key in keys)
    names = tuple(
        DERIVED if entry == DERIVED else key_id for entry, key_id in zip(entries, ids, strict=True)
    )
    return Keyring(ids, names, tuple(Fernet(key) for key in keys))


def keyring(entries: Sequence[str] | None = None, secret_key: str | None = None) -> Keyring:
    """The configured keyring (``MARS_ENCRYPTION_KEYS``; ``derived`` alone when unset)."""
    if entries is None:
        entries = current_app.config["MARS"].get("ENCRYPTION_KEYS") or [DERIVED]
    if secret_key is None:
        secret_key = current_app.config["SECRET_KEY"]
    return _keyring(tuple(entries), secret_key)


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


def seal(data: bytes | str) -> str:
    """Encrypt ``data`` under the first key; the result is ASCII, safe in any column."""
    raw = data.encode() if isinstance(data, str) else data
    return keyring().seal(raw)


def open_sealed(token: str) -> bytes:
    """Decrypt what :func:`seal` made; raises :class:`InvalidToken` if altered, or sealed
    under a key that is no longer in the keyring."""
    return keyring().open(token)


class Sealed(sa.types.TypeDecorator[str]):
    """A text column stored sealed: plugins declare a field that holds personal data or a
    secret MARS must read back as ``mapped_column(Sealed())`` and read and write plain
    ``str``. ``mars keys rotate`` finds every such column and moves it to the first key.
    Sealed values cannot be searched or compared in SQL."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else open_sealed(value).decode()
