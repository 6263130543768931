"""Account links sent by e-mail: address verification and password reset.

A link carries a 256-bit token; only its digest is stored. It works once, until it expires.
Whether an address has an account is never revealed: registering a taken address or asking
to reset an unknown one gets the same answer as the real thing.

Asking for these mails is throttled (``auth.throttle``), per recipient and per requesting
address: a recipient past its limit simply gets no more mail (the answer does not change), an
address past its limit gets 429, which says nothing about any account.

Each request commits what it did (the throttle's counts too, when it sends nothing); a
refused one keeps nothing.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import sqlalchemy as sa

from mars_server import plugin_settings, public_url
from mars_server.auth import accounts, passwords, secrets, throttle
from mars_server.auth.models import EmailToken, User
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import BadRequest, MarsError, ValidationFailed
from mars_server.http.problems import PROBLEM_TYPE_PREFIX
from mars_server.mail import send_mail
from mars_server.state import mars_state

VERIFY, RESET = "verify", "reset"


class TooManyMailRequests(throttle.Throttled):
    type_ = PROBLEM_TYPE_PREFIX + "too-many-requests"
    title = "Too many requests from your address."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            retry_after,
            "Your address asked for too many account e-mails (registrations, password "
            f"resets); try again in {retry_after} seconds.",
        )


def _may_mail(email: str, address: str | None) -> bool:
    """Count a request that would mail ``email``, made from ``address``: whether it may.

    Past the address's limit, :class:`TooManyMailRequests`. Past the recipient's, ``False``:
    the caller sends nothing and answers as always. Every request counts, whether or not the
    address has an account, so that neither answer can tell which addresses have one.
    """
    settings = plugin_settings("auth")
    minutes = settings["account_mail_window_minutes"]
    requester = throttle.Limit.of(
        "mail-ip",
        throttle.address_key(address),
        settings["account_mail_requests_per_address"],
        minutes,
    )
    seconds = throttle.retry_after([requester])
    if seconds is not None:
        raise TooManyMailRequests(seconds)
    throttle.count(requester)
    recipient = throttle.Limit.of(
        "mail-to", throttle.mailbox_key(email), settings["account_mails_per_recipient"], minutes
    )
    return throttle.count(recipient) <= recipient.limit


def _link(path: str, token: str, next_path: str | None = None) -> str:
    # Never from the request's Host header in production: anyone can set it, and a reset
    # link pointing at their site would hand them the token (MARS_PUBLIC_URL is required).
    query = {"token": token} | ({"next": next_path} if next_path else {})
    return f"{public_url(path)}?{urlencode(query)}"


def _issue(user: User, purpose: str, lifetime: dt.timedelta) -> str:
    # A new link replaces the user's older ones of the same purpose.
    db.session.execute(
        sa.delete(EmailToken).where(EmailToken.user_id == user.id, EmailToken.purpose == purpose)
    )
    token = secrets.new_opaque_token()
    db.session.add(
        EmailToken(
            user_id=user.id,
            purpose=purpose,
            digest=secrets.digest(token),
            expires_at=utcnow() + lifetime,
        )
    )
    return token


INVALID_LINK = "This link is invalid, used or expired; ask for a new one."


def _usable(token: str, purpose: str) -> EmailToken | None:
    row = db.session.scalar(
        sa.select(EmailToken).where(
            EmailToken.digest == secrets.digest(token), EmailToken.purpose == purpose
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


def link_is_usable(token: str, purpose: str) -> bool:
    """Whether a link would work now, without using it up (for the page that shows its form)."""
    return _usable(token, purpose) is not None


def _consume(token: str, purpose: str) -> User:
    row = _usable(token, purpose)
    if row is None:
        raise BadRequest(INVALID_LINK)
    row.used_at = utcnow()
    return accounts.get_user(row.user_id)


def send_verification(user: User, next_path: str | None = None) -> None:
    """Mail ``user`` a new verification link, in the caller's transaction; ``next_path``,
    the sign-in they came from, rides along (account_pages.safe_next checks it)."""
    hours = plugin_settings("auth")["verify_link_hours"]
    token = _issue(user, VERIFY, dt.timedelta(hours=hours))
    send_mail(
        user.email,
        "verify_email",
        display_name=user.display_name or user.email,
        verify_url=_link("/accounts/verify", token, next_path),
        expires_in_hours=hours,
    )


def send_password_reset(user: User, *, commit: bool = True) -> None:
    """Mail ``user`` a new reset link (their older ones stop working); audited."""
    minutes = plugin_settings("auth")["reset_link_minutes"]
    token = _issue(user, RESET, dt.timedelta(minutes=minutes))
    audit("auth.password_reset_requested", target=user.id)
    send_mail(
        user.email,
        "reset_password",
        display_name=user.display_name or user.email,
        reset_url=_link("/accounts/reset-password", token),
        expires_in_minutes=minutes,
    )
    if commit:
        db.session.commit()


def register(
    email: str,
    password: str,
    display_name: str = "",
    address: str | None = None,
    *,
    next_path: str | None = None,
) -> None:
    """Create a pending account and mail its verification link; silent if the address has an
    active account or has had its share of mail. ``address`` is the requester's, for its
    limit; ``next_path`` the sign-in the verified page leads back to.

    Registering an address whose account still waits for its confirmation starts it afresh:
    the new password and name replace the waiting ones, and the new link the older ones. So
    the link that activates an account is always the last registration's, and a password
    someone else registered for the address before its owner did (pre-hijacking) never
    survives the owner's own registration.

    An address whose domain signs in another way (single sign-on) is refused: its password
    would never be accepted (the refusal depends on the domain only, not on any account)."""
    refused = mars_state().plugins.password_sign_in_refused(email.strip())
    if refused:
        raise ValidationFailed({"email": [refused]})
    accounts.check_password_policy(password, email=email)
    if _may_mail(email, address):
        user = accounts.find_user(email)
        if user is None:
            user = accounts.create_user(email, password=password, display_name=display_name)
            audit("auth.registered", target=user.id, email=user.email)
            send_verification(user, next_path)
        elif user.status == "pending":
            user.password_hash = passwords.hash_password(password)
            user.display_name = display_name
            audit("auth.registered", target=user.id, email=user.email, again=True)
            send_verification(user, next_path)
    db.session.commit()


def resend_verification(email: str, address: str | None = None) -> None:
    """Mail a new verification link if ``email`` has an account still waiting for one (its
    older links stop working); silent otherwise, and once the address has had its share of
    mail: the answer never tells whether the address has an account."""
    if _may_mail(email, address):
        user = accounts.find_user(email)
        if user is not None and user.status == "pending":
            audit("auth.verification_resent", target=user.id)
            send_verification(user)
    db.session.commit()


def verify_email(token: str) -> User:
    """Use a verification link: a pending account becomes active. :class:`BadRequest` for a
    link that does not work (unknown, used or expired)."""
    user = _consume(token, VERIFY)
    previous = user.status
    if user.status == "pending":
        user.status = "active"
    audit("auth.email_verified", target=user.id, previous_status=previous)
    db.session.commit()
    return user


def request_password_reset(email: str, address: str | None = None) -> None:
    """Mail a reset link if ``email`` has an account that may have one; silent otherwise,
    and once the address has had its share of mail."""
    if _may_mail(email, address):
        user = accounts.find_user(email)
        if user is not None and user.status != "disabled":
            send_password_reset(user, commit=False)
    db.session.commit()


def reset_password(token: str, password: str) -> User:
    """Use a reset link to set a new password; every token of the user is revoked.
    :class:`BadRequest` for a link that does not work, :class:`ValidationFailed` for a
    password the policy refuses: the link then stays usable, for another try."""
    try:
        user = _consume(token, RESET)
        if user.status == "disabled":
            raise BadRequest(INVALID_LINK)
        accounts.set_password(user, password)
    except MarsError:
        db.session.rollback()  # refused: the link, marked used above, stays usable
        raise
    previous = user.status
    if user.status == "pending":  # the mail reached them: the address is theirs
        user.status = "active"
    audit("auth.password_reset", target=user.id, method="email_link", previous_status=previous)
    db.session.commit()
    return user
