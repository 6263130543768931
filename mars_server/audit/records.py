"""Writing entries: JSON-safe details with anything that looks secret taken out.

Callers are told never to put a secret in ``details``; this module makes sure of it anyway,
because an audit log is kept for years and read by many.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mars_server.audit.models import (
    ACTION_LENGTH,
    ACTOR_LENGTH,
    ADDRESS_LENGTH,
    REQUEST_ID_LENGTH,
    TARGET_LENGTH,
    USER_AGENT_LENGTH,
    AuditRecord,
)
from mars_server.db import db, new_id

if TYPE_CHECKING:
    from mars_server.hookspecs import AuditEntry

REDACTED = "[redacted]"
MAX_DEPTH = 8

#: Words that make a key's value a secret: ``password``, ``new_password``, ``refresh_token``,
#: ``clientSecret``, ``Authorization``...
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "cookie",
        "apikey",
        "credential",
        "credentials",
        "verifier",
        "otp",
        "signature",
    }
)
#: ``code`` and ``key`` are secrets only in these company (``code`` alone too).
_SECRET_CODES = frozenset({"auth", "authorization", "verification", "reset", "recovery", "otp"})
_SECRET_KEYS = frozenset({"api", "private", "secret", "signing", "access", "encryption"})
#: ...unless the key names something about the secret, not the secret: ``token_id``,
#: ``secret_hint``, ``password_changed_at``, ``tokens_revoked``.
_SAFE_LAST_WORDS = frozenset(
    {
        "id",
        "ids",
        "hint",
        "count",
        "at",
        "until",
        "kind",
        "type",
        "name",
        "names",
        "prefix",
        "method",
        "reason",
        "scope",
        "scopes",
        "length",
    }
)
#: Secrets recognisable by their value wherever they appear: bearer credentials, MARS
#: personal access tokens and client secrets (``mars_pat_...``, ``mars_cs_...``).
_SECRET_VALUES = re.compile(
    r"\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{20,}|\bmars_(?:pat|cs)_[A-Za-z0-9_-]{8,}"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret_key(key: str) -> bool:
    """Whether a value stored under ``key`` is to be treated as a secret."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if not words or words[-1] in _SAFE_LAST_WORDS:
        return False
    if _SECRET_WORDS.intersection(words):
        return True
    last = words[-1]
    before = words[-2] if len(words) > 1 else None
    if last == "code":
        return before is None or before in _SECRET_CODES
    return last == "key" and before in _SECRET_KEYS


def _clean_text(value: str) -> str:
    # PostgreSQL refuses NUL in text, and a failed audit write would fail the change itself.
    return _SECRET_VALUES.sub(REDACTED, value.replace("\x00", ""))


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON values (str, number, bool, None, list, dict with str keys), with the
    values of secret-looking keys replaced by ``"[redacted]"``. Booleans and ``None`` are
    kept: they say whether something happened, never what a secret is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return redact(value.value, depth)
    if isinstance(value, Decimal):
        return str(value)
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            name = _clean_text(str(key))
            secret = is_secret_key(name) and item is not None and not isinstance(item, bool)
            cleaned[name] = REDACTED if secret else redact(item, depth + 1)
        return cleaned
    if isinstance(value, set | frozenset):
        return sorted((redact(item, depth + 1) for item in value), key=str)
    if isinstance(value, list | tuple):
        return [redact(item, depth + 1) for item in value]
    return _clean_text(str(value))


def _clip(value: str | None, length: int) -> str | None:
    if value is None:
        return None
    return _clean_text(value)[:length]


_INSERT = sa.insert(cast("sa.Table", AuditRecord.__table__))


def record(entry: AuditEntry) -> str:
    """Add ``entry`` to the caller's transaction, unsealed; it commits (or not) with it.

    Written on the session's connection without flushing the ORM's pending changes first
    (an entry refers to no row), so a change's own errors still surface where its code
    expects them. Returns the entry's id.
    """
    occurred_at = entry.occurred_at
    if occurred_at.tzinfo is None:  # the core gives aware times; a naive one is UTC
        occurred_at = occurred_at.replace(tzinfo=dt.UTC)
    entry_id = new_id("aud")
    db.session.connection().execute(
        _INSERT,
        {
            "id": entry_id,
            "occurred_at": occurred_at,
            "actor_id": _clip(entry.actor_id, ACTOR_LENGTH),
            "action": _clip(entry.action, ACTION_LENGTH) or "",
            "target": _clip(entry.target, TARGET_LENGTH),
            "address": _clip(entry.address, ADDRESS_LENGTH),
            "user_agent": _clip(entry.user_agent, USER_AGENT_LENGTH),
            "request_id": _clip(entry.request_id, REQUEST_ID_LENGTH),
            "details": redact(dict(entry.details)),
        },
    )
    return entry_id
