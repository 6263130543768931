"""What single sign-on keeps: who is linked to which account, the sign-ins under way, and
the SAML assertions already used.

``user_id`` is a user's public id, not a foreign key: a plugin never depends on another
plugin's tables (the ``mars_user_info`` hook says whether a user exists).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, new_id, utcnow


class Identity(Model):
    """A person at an identity provider (its ``sub``, or the SAML NameID), linked to an
    account: they sign in to it from then on, whatever their address becomes."""

    __tablename__ = "sso_identities"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("sso"))
    provider: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(40), index=True, info={"user_id": True})
    #: the address the provider last gave, shown to the person
    email: Mapped[str] = mapped_column(sa.String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[dt.datetime | None]

    __table_args__ = (sa.UniqueConstraint("provider", "subject"),)


class SignInRequest(Model):
    """A sign-in (or a link) sent to an identity provider and not back yet: used once.

    ``id`` is OpenID Connect's ``state`` and SAML's ``RelayState``; ``saml_request_id`` the
    AuthnRequest's ID, which the answer must be ``InResponseTo``.
    """

    __tablename__ = "sso_requests"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    nonce: Mapped[str | None] = mapped_column(sa.String(64))
    code_verifier: Mapped[str | None] = mapped_column(sa.String(128))
    saml_request_id: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    #: the MARS sign-in page to go back to, and the binding it gave (a sign-in)
    next_url: Mapped[str | None] = mapped_column(sa.Text)
    binding: Mapped[str | None] = mapped_column(sa.String(64))
    #: the app asked for a fresh sign-in (``prompt=login``, ``max_age``): so is the provider
    fresh: Mapped[bool] = mapped_column(default=False)
    #: the account a person signed in to MARS asked to link (a link)
    link_user_id: Mapped[str | None] = mapped_column(sa.String(40), info={"user_id": True})
    #: once the provider answered a link: who it says the person is, until they confirm
    subject: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(320))
    confirm_digest: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class SeenAssertion(Model):
    """A SAML assertion that signed someone in: the same one again is a replay."""

    __tablename__ = "sso_seen_assertions"

    provider: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    assertion_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
