"""Remembered consent: what a user allowed an app, and taking it back.

Only a confidential app's consent is remembered. A public app has no secret, so anything
can claim its client id; for it MARS asks every time (RFC 8252 section 8.6), as it does when
the app asks for more than was allowed, or sends ``prompt=consent``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server.auth import tokens
from mars_server.auth.models import OAuthClient, OAuthConsent, OAuthToken
from mars_server.db import db, utcnow
from mars_server.events import audit
from mars_server.http import NotFound

if TYPE_CHECKING:
    from mars_server.auth.models import User


def covers(user: User, client: OAuthClient, scope: str) -> bool:
    """Whether ``user`` already allowed the confidential ``client`` every scope in ``scope``."""
    if client.client_type != "confidential":
        return False
    consent = db.session.get(OAuthConsent, (user.id, client.client_id))
    return consent is not None and set(scope.split()) <= set(consent.scope.split())


def remember(user: User, client: OAuthClient, scope: str) -> None:
    """Record that ``user`` allowed ``client`` ``scope`` (added to what they allowed before),
    in the caller's transaction: the one that issues the code (:func:`oauth.approve`)."""
    if client.client_type != "confidential" and not client.first_party:
        return  # a public app's identity is not proven: its users are asked each time
    consent = db.session.get(OAuthConsent, (user.id, client.client_id))
    if consent is None:
        db.session.add(OAuthConsent(user_id=user.id, client_id=client.client_id, scope=scope))
        return
    consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scope.split())))
    consent.granted_at = utcnow()


def list_authorizations(user: User) -> list[dict[str, Any]]:
    """The apps ``user`` allowed, newest first."""
    rows = db.session.execute(
        sa.select(OAuthConsent, OAuthClient.name)
        .join(OAuthClient, OAuthClient.client_id == OAuthConsent.client_id)
        .where(OAuthConsent.user_id == user.id)
        .order_by(OAuthConsent.granted_at.desc(), OAuthConsent.client_id)
    ).all()
    return [
        {
            "client_id": consent.client_id,
            "app_name": name,
            "scopes": consent.scope.split(),
            "granted_at": consent.granted_at,
        }
        for consent, name in rows
    ]


def revoke_authorization(user: User, client_id: str) -> int:
    """Forget ``user``'s consent to ``client_id`` and revoke every token it holds for them
    (committed); returns how many tokens were revoked."""
    consent = db.session.get(OAuthConsent, (user.id, client_id))
    if consent is None:
        raise NotFound(f"You have not allowed an app {client_id!r}.")
    db.session.delete(consent)
    revoked = db.session.execute(
        sa.update(OAuthToken)
        .where(
            OAuthToken.user_id == user.id,
            OAuthToken.client_id == client_id,
            OAuthToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    # What the app created in the user's name with account:tokens goes with it.
    personal = tokens.revoke_issued_by(client_id, user.id)
    audit(
        "auth.app_authorization_revoked",
        target=user.id,
        client_id=client_id,
        tokens_revoked=revoked,
        personal_access_tokens_revoked=personal,
    )
    db.session.commit()
    return int(revoked) + personal
