"""Passwords: argon2id hashes, rehashed when the parameters change, and a strength policy.

The cost is the app's ``PASSWORD_HASH_*`` settings: by default RFC 9106's low-memory profile
(64 MiB, 3 passes, 4 lanes), above OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane),
which production enforces (mars_server.config). A hash made with other parameters still
verifies, and is replaced at the next sign-in.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 8
MAX_LENGTH = 128


@cache
def _hasher_with(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism)


def _hasher() -> PasswordHasher:
    """The current app's hasher (its ``PASSWORD_HASH_*`` settings)."""
    mars = current_app.config["MARS"]
    return _hasher_with(
        mars["PASSWORD_HASH_MEMORY_KIB"],
        mars["PASSWORD_HASH_TIME_COST"],
        mars["PASSWORD_HASH_PARALLELISM"],
    )


@cache
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of leaked sets, as zxcvbn ships them."""
    return frozenset(FREQUENCY_LISTS["passwords"])


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("a password nobody has, for timing only")


def password_problems(password: str, *, email: str = "") -> list[str]:
    """Why ``password`` is refused; an empty list when it is acceptable."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters.")
    elif len(password) > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters.")
    elif password.lower() in _common_passwords():
        problems.append("This password is among the most common ones; choose another.")
    elif email and password.lower() in (email.lower(), email.lower().partition("@")[0]):
        problems.append("Do not use your e-mail address as your password.")
    return problems


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Check ``password``; return whether it matches and, if the hash is outdated, a new one.

    An account without a password still costs one verification, so response times do not
    tell which accounts exist.
    """
    hasher = _hasher()
    try:
        hasher.verify(password_hash or _dummy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False, None
    if password_hash is None:
        return False, None
    return True, hasher.hash(password) if hasher.check_needs_rehash(password_hash) else None
