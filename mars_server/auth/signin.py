"""Signing in with a password: throttled per account and per address, never telling which
accounts exist, rehashing passwords whose parameters are outdated.

Both functions commit, on refusal too: a failure's count and audit entry must outlive the
refused request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mars_server import metrics, plugin_settings
from mars_server.auth import accounts, passwords, throttle
from mars_server.db import db
from mars_server.http import MarsError
from mars_server.http.problems import PROBLEM_TYPE_PREFIX
from mars_server.state import mars_state

if TYPE_CHECKING:
    from mars_server.auth.models import User


#: ``reason``: ``unknown_account``, ``wrong_password``, ``disabled``, ``not_verified``,
#: ``wrong_current_password``, ``throttled``, ``password_not_accepted`` (single sign-on only),
#: ``external_refused`` (auth.external); for OAuth clients (client_auth.py)
#: ``client_invalid`` and ``client_throttled``.
SIGNIN_FAILURES = metrics.counter(
    "mars_signin_failures_total",
    "Failed sign-ins and OAuth client authentications, by reason.",
    ("reason",),
)


class TooManyAttempts(throttle.Throttled):
    type_ = PROBLEM_TYPE_PREFIX + "too-many-sign-in-attempts"
    title = "Too many failed sign-ins."


class SignInFailed(Exception):
    """Wrong e-mail or password, or an account that cannot sign in: one message for all."""

    def __init__(self, message: str = "The e-mail address or the password is wrong.") -> None:
        super().__init__(message)


class PasswordNotAccepted(SignInFailed):
    """The address signs in another way (single sign-on): its password is not even checked."""


def _limits(email: str, address: str | None) -> list[throttle.Limit]:
    settings = plugin_settings("auth")
    minutes = settings["login_window_minutes"]
    limits = [
        throttle.Limit.of(
            "acct", accounts.email_key(email), settings["login_failures_per_account"], minutes
        )
    ]
    limits.append(
        throttle.Limit.of(
            "ip",
            throttle.address_key(address),
            settings["login_failures_per_address"],
            minutes,
        )
    )
    return limits


def check_throttle(email: str, address: str | None) -> None:
    """Raise :class:`TooManyAttempts` while the account or the address is locked out."""
    seconds = throttle.retry_after(_limits(email, address))
    if seconds is not None:
        raise TooManyAttempts(seconds)


def _audit_failure(email: str, user: User | None, reason: str) -> None:
    """``auth.sign_in_failed``, never with the password; an unknown address only as the
    digest its throttle counter is kept under (it may be a password typed in the wrong box)."""
    SIGNIN_FAILURES.labels(reason).inc()
    if user is None:
        account = _limits(email, None)[0].key.removeprefix("acct:")
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
    for limit in _limits(email, address):
        throttle.count(limit)
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
    refused = mars_state().plugins.password_sign_in_refused(email.strip())
    if refused:
        # Said whether or not an account exists: it depends on the address's domain only.
        _audit_failure(email, accounts.find_user(email), "password_not_accepted")
        db.session.commit()
        raise PasswordNotAccepted(refused)
    user = accounts.find_user(email)
    ok, new_hash = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.status != "active":
        _record_failure(email, address, user, _failure_reason(user, ok))
        raise SignInFailed
    if new_hash:
        user.password_hash = new_hash
    throttle.reset(_limits(email, None))
    accounts.record_login(user)
    accounts.audit_as(user.id, "auth.signed_in", target=user.id, method="password")
    db.session.commit()
    return user


def _check_throttle_of(user: User, address: str | None) -> None:
    """:func:`check_throttle` for a signed-in user's password check; a refusal is audited
    (committed)."""
    try:
        check_throttle(user.email, address)
    except TooManyAttempts:
        _audit_failure(user.email, user, "throttled")
        db.session.commit()
        raise


def change_password(user: User, current: str, new: str, address: str | None) -> None:
    """Change ``user``'s password, the current one checked under the sign-in limits: a
    wrong one counts as a failed sign-in of the account and of the address, so a stolen
    token cannot be used to guess the password; past the limit, :class:`TooManyAttempts`.
    Committed; a wrong password's count is committed before the 422 is raised, and nothing
    else of a refused change is kept."""
    _check_throttle_of(user, address)

    def count_failure() -> None:
        _record_failure(user.email, address, user, "wrong_current_password")

    try:
        accounts.change_password(user, current, new, on_wrong_password=count_failure)
    except MarsError:
        db.session.rollback()
        raise
    db.session.commit()


def confirm_password(user: User, password: str, address: str | None) -> bool:
    """Whether ``password`` is ``user``'s, checked under the sign-in limits like a change of
    password: a wrong one counts, past the limits :class:`TooManyAttempts`. Commits a
    failure's count; a success changes nothing. An address that signs in another way (single
    sign-on) has no password that counts."""
    _check_throttle_of(user, address)
    if mars_state().plugins.password_sign_in_refused(user.email):
        return False
    ok, _ = passwords.verify_password(user.password_hash, password)
    if not ok:
        _record_failure(user.email, address, user, "wrong_current_password")
    return ok


def sign_out(user: User | None, client: Any, families: list[str]) -> int:
    """A browser signs out (``/oauth/logout``): the tokens ``client`` got through it (its
    authorizations' ``families``) are revoked, and the sign-out is audited for ``user``.
    Returns how many tokens were still live. Commits."""
    from mars_server.auth import oauth

    revoked = oauth.revoke_families(client.client_id, families) if client is not None else 0
    if user is not None:
        accounts.audit_as(
            user.id,
            "auth.signed_out",
            target=user.id,
            client_id=client.client_id if client is not None else None,
            tokens_revoked=revoked,
        )
    db.session.commit()
    return revoked
