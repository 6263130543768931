"""Signing in with a password: throttled per account and per address, never telling which
accounts exist, rehashing passwords whose parameters are outdated."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_server import plugin_settings
from mars_server.auth import accounts, passwords
from mars_server.auth.models import LoginThrottle, User
from mars_server.db import db, utcnow
from mars_server.http import MarsError
from mars_server.http.problems import PROBLEM_TYPE_PREFIX


class TooManyAttempts(MarsError):
    status = 429
    type_ = PROBLEM_TYPE_PREFIX + "too-many-sign-in-attempts"
    title = "Too many failed sign-ins."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


class SignInFailed(Exception):
    """Wrong e-mail or password, or an account that cannot sign in: one message for all."""


def _keys(email: str, address: str | None) -> list[tuple[str, int]]:
    settings = plugin_settings("auth")
    # Keys are digests: the table never holds e-mail addresses or IPs in the clear.
    account = hashlib.sha256(accounts.email_key(email).encode()).hexdigest()[:32]
    keys = [(f"acct:{account}", settings["login_failures_per_account"])]
    if address:
        ip = hashlib.sha256(address.encode()).hexdigest()[:32]
        keys.append((f"ip:{ip}", settings["login_failures_per_address"]))
    return keys


def _window() -> dt.timedelta:
    return dt.timedelta(minutes=plugin_settings("auth")["login_window_minutes"])


def check_throttle(email: str, address: str | None) -> None:
    """Raise :class:`TooManyAttempts` while the account or the address is locked out."""
    now = utcnow()
    for key, limit in _keys(email, address):
        row = db.session.get(LoginThrottle, key)
        if row is not None and row.failures >= limit and row.window_start + _window() > now:
            raise TooManyAttempts(math.ceil((row.window_start + _window() - now).total_seconds()))


def _audit_failure(email: str, user: User | None, reason: str) -> None:
    """``auth.sign_in_failed``, never with the password; an unknown address only as the
    digest its throttle counter is kept under (it may be a password typed in the wrong box)."""
    if user is None:
        account = _keys(email, None)[0][0].removeprefix("acct:")
        accounts.audit_as(None, "auth.sign_in_failed", reason=reason, account_digest=account)
    else:
        accounts.audit_as(None, "auth.sign_in_failed", target=user.id, reason=reason)


def _failure_reason(user: User | None, password_ok: bool) -> str:
    if user is None:
        return "unknown_account"
    if not password_ok:
        return "wrong_password"
    return "disabled" if user.status == "disabled" else "not_verified"


def _record_failure(email: str, address: str | None, user: User | None, reason: str) -> None:
    now = utcnow()
    for key, _ in _keys(email, address):
        # One statement per key, so concurrent failures are all counted.
        updated = db.session.execute(
            sa.update(LoginThrottle)
            .where(LoginThrottle.key == key, LoginThrottle.window_start > now - _window())
            .values(failures=LoginThrottle.failures + 1)
        ).rowcount  # type: ignore[attr-defined]
        if not updated:
            db.session.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key))
            db.session.add(LoginThrottle(key=key, window_start=now, failures=1))
            try:
                db.session.flush()
            except IntegrityError:
                db.session.rollback()
    # After any rollback above, so the entry commits with the counters.
    _audit_failure(email, user, reason)
    db.session.commit()


def authenticate(email: str, password: str, address: str | None) -> User:
    """The active user with these credentials; raises :class:`SignInFailed` or
    :class:`TooManyAttempts`. Commits (the failure count must survive the request)."""
    try:
        check_throttle(email, address)
    except TooManyAttempts:
        _audit_failure(email, accounts.find_user(email), "throttled")
        db.session.commit()  # the refusal is recorded, though nothing else changed
        raise
    user = accounts.find_user(email)
    ok, new_hash = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.status != "active":
        _record_failure(email, address, user, _failure_reason(user, ok))
        raise SignInFailed("The e-mail address or the password is wrong.")
    if new_hash:
        user.password_hash = new_hash
    for key, _ in _keys(email, None):
        db.session.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key))
    accounts.record_login(user)
    accounts.audit_as(user.id, "auth.signed_in", target=user.id, method="password")
    db.session.commit()
    return user


def change_password(user: User, current: str, new: str, address: str | None) -> None:
    """Change ``user``'s password, the current one checked under the sign-in limits: a
    wrong one counts as a failed sign-in of the account and of the address, so a stolen
    token cannot be used to guess the password; past the limit, :class:`TooManyAttempts`.
    A wrong password's count is committed before the 422 is raised."""
    try:
        check_throttle(user.email, address)
    except TooManyAttempts:
        _audit_failure(user.email, user, "throttled")
        db.session.commit()
        raise

    def count_failure() -> None:
        _record_failure(user.email, address, user, "wrong_current_password")

    accounts.change_password(user, current, new, on_wrong_password=count_failure)
