"""Signing in and linking with an identity provider: the part of the flow that is neither
OpenID Connect's nor SAML's.

A sign-in goes: MARS's sign-in page (``mars_sign_in_options``) → :func:`begin` → the
identity provider → :func:`complete` → MARS's OAuth pages (``mars_external_sign_in``) → the
app. A link goes: ``POST /api/v1/sso/links`` (a person signed in to MARS) → the identity
provider → :func:`complete` → a confirmation page naming both accounts → :func:`confirm_link`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mars_server import plugin_settings, public_url
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.hookspecs import ExternalIdentity
from mars_server.http import (
    BadRequest,
    Conflict,
    NotFound,
    ValidationFailed,
    confirm_password,
    external_sign_in,
    user_info,
)
from mars_sso import oidc, saml
from mars_sso.models import Identity, SeenAssertion, SignInRequest
from mars_sso.oidc import ProviderError

#: the MARS pages a sign-in may go back to (as ``mars_external_sign_in`` requires)
NEXT_PREFIX = "/oauth/authorize?"
MAX_NEXT = 4096
MAX_BINDING = 64


def providers() -> list[dict[str, Any]]:
    return list(plugin_settings("sso").get("providers", []))


def provider(name: str) -> dict[str, Any]:
    for candidate in providers():
        if candidate["name"] == name:
            return candidate
    raise NotFound(f"No identity provider is called {name!r}.")


def vouches_for(found: dict[str, Any], email: str) -> bool:
    """Whether ``found`` may vouch for ``email``: a provider with ``domains`` for those only;
    one without, for any address but those of another provider's domains. What it may not
    vouch for reaches only the accounts linked to it before, and makes none."""
    owner = provider_for_domain(email)
    if owner is not None:
        return bool(owner["name"] == found["name"])
    return not found["domains"]


def provider_for_domain(email: str) -> dict[str, Any] | None:
    """The provider people of ``email``'s domain must sign in with, if any."""
    domain = email.rpartition("@")[2].strip().lower()
    return next((p for p in providers() if domain and domain in p["domains"]), None)


def callback_url(found: dict[str, Any]) -> str:
    return public_url(f"/sso/{found['name']}/callback")


def _expiry() -> dt.datetime:
    return utcnow() + dt.timedelta(minutes=plugin_settings("sso")["request_minutes"])


def wants_fresh_sign_in(next_url: str) -> bool:
    """Whether the app's authorization request asks for a sign-in now (OpenID Connect's
    ``prompt=login`` or ``max_age``): the provider is asked for one too."""
    query = parse_qs(urlsplit(next_url).query)
    return "login" in " ".join(query.get("prompt", [])).split() or "max_age" in query


def begin(
    found: dict[str, Any],
    *,
    next_url: str | None = None,
    binding: str | None = None,
    link_user_id: str | None = None,
) -> str:
    """Start a sign-in (``next_url`` and ``binding`` from MARS's sign-in page) or a link
    (``link_user_id``); returns the identity provider's address to send the browser to.
    Committed."""
    if link_user_id is None and not (
        next_url
        and next_url.startswith(NEXT_PREFIX)
        and len(next_url) <= MAX_NEXT
        and binding
        and len(binding) <= MAX_BINDING
    ):
        raise BadRequest("This sign-in did not start from MARS's sign-in page.")
    db.session.execute(sa.delete(SignInRequest).where(SignInRequest.expires_at <= utcnow()))
    fresh = next_url is not None and wants_fresh_sign_in(next_url)
    row = SignInRequest(
        id=secrets.token_urlsafe(32),
        provider=found["name"],
        next_url=next_url,
        binding=binding,
        link_user_id=link_user_id,
        fresh=fresh,
        created_at=utcnow(),
        expires_at=_expiry(),
    )
    if found["kind"] == "oidc":
        url, row.nonce, row.code_verifier = oidc.authorization_url(
            found, callback_url(found), row.id, fresh=fresh
        )
    else:
        url, row.saml_request_id = saml.authorization_url(found, row.id, fresh=fresh)
    db.session.add(row)
    db.session.commit()
    return url


def take_request(found: dict[str, Any], request_id: str | None) -> SignInRequest | None:
    """The sign-in under way called ``request_id`` (``state``, ``RelayState``), used up
    (committed: it is answered once, whatever the answer); None when there is none, it
    expired or it was for another provider."""
    if not request_id or len(request_id) > 64:
        return None
    row = db.session.get(SignInRequest, request_id)
    if row is None or row.provider != found["name"] or row.subject is not None:
        return None
    db.session.expunge(row)
    # Used by one answer only, even by two at once: only one of them deletes the row.
    taken = db.session.execute(sa.delete(SignInRequest).where(SignInRequest.id == row.id))
    db.session.commit()
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return row if row.expires_at > utcnow() else None


def remember_assertion(found: dict[str, Any], assertion_id: str, until: dt.datetime) -> None:
    """Refuse a SAML assertion seen before (a replay); remember this one until it expires."""
    db.session.execute(sa.delete(SeenAssertion).where(SeenAssertion.expires_at <= utcnow()))
    try:
        with db.session.begin_nested():
            db.session.add(
                SeenAssertion(
                    provider=found["name"], assertion_id=assertion_id[:255], expires_at=until
                )
            )
    except IntegrityError:
        raise ProviderError(
            f"This sign-in with {found['label']} was used already. Sign in again."
        ) from None


def _first(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set):
        return [str(item) for item in value]
    return [str(value)]


def mapped_roles(found: dict[str, Any], claims: dict[str, Any]) -> dict[str, bool]:
    """Each role the provider's rules name: held when one of its rules matches."""
    roles: dict[str, bool] = {}
    for rule in found["roles"]:
        matched = rule["value"] in _values(claims.get(rule["claim"]))
        roles[rule["role"]] = roles.get(rule["role"], False) or matched
    return roles


@dataclass(frozen=True)
class Outcome:
    """Where the browser goes next (``redirect``), or a page to show it."""

    redirect: str | None = None
    page: str | None = None
    context: dict[str, Any] | None = None


def complete(
    found: dict[str, Any], row: SignInRequest | None, subject: str, claims: dict[str, Any]
) -> Outcome:
    """The identity provider vouched for ``subject`` with ``claims``: sign them in, or ask
    the person signed in to MARS to confirm the link. Committed."""
    subject = subject[:255]
    email = _first(claims.get(found["email_claim"])).strip()[:320]
    if "@" not in email:
        raise ProviderError(f"{found['label']} did not give your e-mail address.")
    linked = db.session.scalar(
        sa.select(Identity).where(Identity.provider == found["name"], Identity.subject == subject)
    )
    if row is not None and row.link_user_id is not None:
        return _ask_to_link(found, row, linked, subject, email)
    ours = vouches_for(found, email)
    verified = ours and (found["trust_email"] or claims.get("email_verified") in (True, "true"))
    result = external_sign_in(
        ExternalIdentity(
            method=f"sso:{found['name']}",
            email=email,
            email_verified=bool(verified),
            display_name=_first(claims.get(found["name_claim"])),
            user_id=linked.user_id if linked is not None else None,
            create=found["create_accounts"] and ours,
            roles=mapped_roles(found, claims),
        ),
        row.next_url if row is not None else None,
        row.binding if row is not None else None,
    )
    if result.refused is not None or result.user_id is None:
        db.session.commit()  # the refusal's audit entry
        return Outcome(page="error.html", context={"message": result.refused})
    if linked is None:
        linked = Identity(provider=found["name"], subject=subject, user_id=result.user_id)
        db.session.add(linked)
        audit("sso.identity_linked", target=result.user_id, provider=found["name"], how="email")
    linked.email = email
    linked.last_sign_in_at = utcnow()
    db.session.commit()
    if result.url is None:  # signed in at the provider's own initiative: the website asks
        return Outcome(page="signed_in.html", context={"provider": found})
    return Outcome(redirect=result.url)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ask_to_link(
    found: dict[str, Any],
    row: SignInRequest,
    linked: Identity | None,
    subject: str,
    email: str,
) -> Outcome:
    user_id = row.link_user_id
    assert user_id is not None
    account = user_info(user_id)
    if account is None or not account.active:
        db.session.commit()
        return Outcome(page="error.html", context={"message": "Your MARS account is not active."})
    if linked is not None:
        db.session.commit()
        message = (
            f"This {found['label']} account is linked to your MARS account already."
            if linked.user_id == user_id
            else f"This {found['label']} account is linked to another MARS account."
        )
        return Outcome(page="error.html", context={"message": message})
    # Confirmed on a page naming both accounts: someone who sent this person a link they
    # started themselves cannot attach the person's identity to their own account.
    token = secrets.token_urlsafe(32)
    pending = SignInRequest(
        id=secrets.token_urlsafe(32),
        provider=found["name"],
        link_user_id=user_id,
        subject=subject,
        email=email,
        confirm_digest=_digest(token),
        expires_at=_expiry(),
    )
    db.session.add(pending)
    db.session.commit()
    return Outcome(
        page="link.html",
        context={
            "provider": found,
            "email": email,
            "account": account.email or account.display_name,
            "request_id": pending.id,
            "token": token,
        },
    )


def _pending_link(found: dict[str, Any], request_id: str, token: str) -> SignInRequest:
    row = db.session.get(SignInRequest, request_id) if 0 < len(request_id) <= 64 else None
    if (
        row is None
        or row.provider != found["name"]
        or row.confirm_digest is None
        or not hmac.compare_digest(row.confirm_digest, _digest(token))
        or row.expires_at <= utcnow()
    ):
        raise BadRequest("This link request has expired or was used. Start again from the website.")
    return row


def cancel_link(found: dict[str, Any], request_id: str, token: str) -> None:
    """The person said no: the link waiting for them is forgotten. Committed."""
    db.session.delete(_pending_link(found, request_id, token))
    db.session.commit()


def confirm_link(
    found: dict[str, Any], request_id: str, token: str, password: str, address: str | None
) -> str:
    """The person confirmed the link with the MARS account's password: their identity at the
    provider signs in to that account from now on. Returns the account's id. Committed.

    The password proves that whoever signed in at the provider in this browser also holds
    the MARS account: someone who started a link for their own account and sent the address
    to another person cannot attach that person's identity to it."""
    row = _pending_link(found, request_id, token)
    assert row.link_user_id is not None and row.subject is not None
    if not confirm_password(row.link_user_id, password, address):
        raise ValidationFailed({"password": ["The password is wrong."]})
    db.session.delete(row)
    identity = Identity(
        provider=found["name"], subject=row.subject, user_id=row.link_user_id, email=row.email
    )
    db.session.add(identity)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            f"This {found['label']} account is linked to a MARS account already."
        ) from None
    audit("sso.identity_linked", target=row.link_user_id, provider=found["name"], how="confirmed")
    db.session.commit()
    return row.link_user_id


def identities_of(user_id: str) -> list[Identity]:
    return list(
        db.session.scalars(
            sa.select(Identity).where(Identity.user_id == user_id).order_by(Identity.created_at)
        )
    )


def unlink(user_id: str, identity_id: str) -> None:
    identity = db.session.get(Identity, identity_id)
    if identity is None or identity.user_id != user_id:
        raise NotFound("You have no linked sign-in with this id.")
    db.session.delete(identity)
    audit("sso.identity_unlinked", target=user_id, provider=identity.provider)
    db.session.commit()


def check_providers() -> None:
    """Readiness: every SAML provider's metadata reads and xmlsec1 is installed. (An OpenID
    provider being down is not MARS's unreadiness: only its sign-ins fail, with a page.)"""
    for found in providers():
        if found["kind"] == "saml":
            saml.check(found)


def purge_expired() -> None:
    """Forget sign-ins that were never answered and assertions past their replay window."""
    now = utcnow()
    db.session.execute(sa.delete(SignInRequest).where(SignInRequest.expires_at <= now))
    db.session.execute(sa.delete(SeenAssertion).where(SeenAssertion.expires_at <= now))
