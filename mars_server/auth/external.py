"""Signing in people another system vouches for (``mars_external_sign_in``): single sign-on
plugins find, link or make their account here, and hand their browser to the OAuth pages.

The hand-over is a link that works once, within two minutes, in the browser whose sign-in
page started it: its digest covers the page session's binding and the page to go on to, so a
link someone else obtained signs nobody in (login CSRF), and it cannot be pointed elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import sqlalchemy as sa

from mars_server import public_url
from mars_server.auth import accounts, secrets, signin
from mars_server.auth.models import ROLES, EmailToken, User
from mars_server.db import db, utcnow
from mars_server.events import acting_as, audit
from mars_server.events import context as acting_context
from mars_server.hookspecs import ExternalIdentity, ExternalSignIn

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

PURPOSE = "sign_in"
LIFETIME = dt.timedelta(minutes=2)
CONTINUE_PATH = "/oauth/continue"
#: the pages a hand-over may go on to: an authorization request of MARS's own
NEXT_PREFIX = "/oauth/authorize?"

NO_ACCOUNT = (
    "There is no MARS account for {email}, and this sign-in cannot make one. Ask an "
    "administrator of MARS for an account."
)
NOT_VOUCHED = (
    "Your identity provider does not confirm that {email} is your address, so MARS cannot "
    "make an account for it."
)
UNVERIFIED = (
    "A MARS account with the address {email} exists, but your identity provider does not "
    "confirm that the address is yours. Sign in with your password, then link this sign-in "
    "to your account."
)
GONE = "The MARS account linked to this sign-in no longer exists."
DISABLED = "This MARS account is disabled. Ask an administrator of MARS."


def _digest(ticket: str, binding: str, next_url: str) -> str:
    material = "\n".join((ticket, binding, next_url)).encode()
    return hashlib.sha256(material).hexdigest()


def sign_in(
    identity: ExternalIdentity, next_url: str | None, binding: str | None
) -> ExternalSignIn:
    """The ``mars_external_sign_in`` hook: in the caller's transaction, never committed."""
    user, created, refused = _account(identity)
    if refused is not None or user is None:
        signin.SIGNIN_FAILURES.labels("external_refused").inc()
        accounts.audit_as(
            user.id if user else None,
            "auth.sign_in_failed",
            target=user.id if user else None,
            reason="external_refused",
            method=identity.method,
        )
        return ExternalSignIn(refused=refused)
    with acting_as(dataclasses.replace(acting_context.current(), actor_id=user.id)):
        if created:
            audit(
                "auth.user_created",
                target=user.id,
                email=user.email,
                status=user.status,
                roles=sorted(user.role_names),
                method=identity.method,
            )
        _apply_roles(user, identity.roles)
        accounts.record_login(user)
        audit("auth.signed_in", target=user.id, method=identity.method)
    url = None
    if next_url is not None and binding:
        if not next_url.startswith(NEXT_PREFIX):
            raise ValueError(f"next_url must start with {NEXT_PREFIX}: {next_url!r}")
        ticket = secrets.new_opaque_token()
        db.session.add(
            EmailToken(
                user_id=user.id,
                purpose=PURPOSE,
                digest=_digest(ticket, binding, next_url),
                expires_at=utcnow() + LIFETIME,
            )
        )
        url = public_url(CONTINUE_PATH) + "?" + urlencode({"ticket": ticket, "next": next_url})
    return ExternalSignIn(user_id=user.id, created=created, url=url)


def _account(identity: ExternalIdentity) -> tuple[User | None, bool, str | None]:
    """(the account, whether it was just made, why not)."""
    if identity.user_id is not None:
        user = db.session.get(User, identity.user_id)
        if user is None:
            return None, False, GONE
    else:
        user = accounts.find_user(identity.email)
        if user is None:
            if not identity.create:
                return None, False, NO_ACCOUNT.format(email=identity.email)
            if not identity.email_verified:
                # Made now, the account would be the provider's person's; its address's owner
                # could not have it back (pre-account-takeover through the link).
                return None, False, NOT_VOUCHED.format(email=identity.email)
            user = accounts.create_user(
                identity.email, display_name=identity.display_name[:100], status="active"
            )
            return user, True, None
        if not identity.email_verified:
            return user, False, UNVERIFIED.format(email=identity.email)
        if user.status == "pending":
            # Whoever registered this address chose the password, and it may not have been
            # its owner (pre-hijacking): the owner is who the provider vouches for.
            user.password_hash = None
            user.status = "active"
    if user.status != "active":
        return user, False, DISABLED
    return user, False, None


def _apply_roles(user: User, roles: Mapping[str, bool]) -> None:
    for role, granted in roles.items():
        if role not in ROLES:
            log.warning("an external sign-in names the unknown role %r: ignored", role)
        elif granted:
            accounts.grant_role(user, role, commit=False)
        else:
            try:
                accounts.revoke_role(user, role, commit=False)
            except accounts.LastAdmin:
                log.warning("an external sign-in would take the last admin's role: kept")


def hand_over(ticket: str, binding: str, next_url: str) -> User | None:
    """The user a hand-over link signs in, using it up (committed); ``None`` if it is not one
    for this browser and page, or used, or expired."""
    if not next_url.startswith(NEXT_PREFIX) or not binding:
        return None
    row = db.session.scalar(
        sa.select(EmailToken).where(
            EmailToken.digest == _digest(ticket, binding, next_url),
            EmailToken.purpose == PURPOSE,
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    # Used up by one request only, even by two at once: the row changes only while unused.
    used = db.session.execute(
        sa.update(EmailToken)
        .where(EmailToken.id == row.id, EmailToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    db.session.commit()
    if used.rowcount != 1:  # type: ignore[attr-defined]
        return None
    user = db.session.get(User, row.user_id)
    return user if user is not None and user.status == "active" else None
