"""Accounts, roles and credentials. Every secret is stored only as a digest."""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mars_server.db import Model, Timestamped, Versioned, new_id, utcnow

USER_STATUSES = ("pending", "active", "disabled")
ROLES = ("admin", "member")


class User(Timestamped, Versioned, Model):
    __tablename__ = "auth_users"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("usr"))
    #: as the user typed it; ``email_key`` (lower-cased) is what is unique.
    email: Mapped[str] = mapped_column(sa.String(320))
    email_key: Mapped[str] = mapped_column(sa.String(320), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(100), default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    must_change_password: Mapped[bool] = mapped_column(default=False)
    #: renewed whenever every credential of the user is revoked (new password, disabled,
    #: an operator's revoke-all): browser sign-ins made before then no longer count.
    sign_in_stamp: Mapped[str] = mapped_column(
        sa.String(32), default=lambda: secrets.token_hex(16), server_default=""
    )
    last_login_at: Mapped[dt.datetime | None]
    #: the person asked for their account's deletion: it is erased then, unless they sign in
    #: before (docs/privacy.md)
    deletion_due_at: Mapped[dt.datetime | None]
    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'active', 'disabled')", name="status"),
    )

    @property
    def role_names(self) -> frozenset[str]:
        return frozenset(role.role for role in self.roles)


class UserRole(Model):
    __tablename__ = "auth_user_roles"

    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship(back_populates="roles")


class PersonalAccessToken(Model):
    __tablename__ = "auth_personal_access_tokens"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("pat"))
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    #: the first characters of the token, safe to show so people can tell tokens apart.
    hint: Mapped[str] = mapped_column(sa.String(24))
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[str] = mapped_column(sa.Text)  # space-separated
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(sa.String(45))
    revoked_at: Mapped[dt.datetime | None]
    #: the OAuth app that created it for the user (``account:tokens``); revoked with the app's
    #: authorization, or the app
    issued_by_client_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class EmailToken(Model):
    """A single-use, expiring link: sent by e-mail (address verification, password reset), or
    handing a browser signed in elsewhere to the OAuth pages (``auth.external``)."""

    __tablename__ = "auth_email_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(sa.String(16))  # "verify" | "reset" | "sign_in"
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class Throttle(Model):
    """A fixed-window counter shared by all workers (see ``auth.throttle``): failed sign-ins,
    failed OAuth client authentications, account e-mails asked for. ``key`` is a kind and a
    digest, never an address or an e-mail in the clear."""

    # The name is older than the other counters: sign-ins were the first thing counted.
    __tablename__ = "auth_login_throttle"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    window_start: Mapped[dt.datetime]
    #: what was counted in the window that began at ``window_start``
    failures: Mapped[int] = mapped_column(default=0)


class OAuthClient(Timestamped, Versioned, Model):
    """An app registered by a user: confidential (has a secret) or public (PKCE only)."""

    __tablename__ = "auth_oauth_clients"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("app"))
    client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    secret_digest: Mapped[str | None] = mapped_column(sa.String(64))
    #: the previous secret stays valid until then, so a rotation needs no downtime.
    previous_secret_digest: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    #: the user who registered it; ``None`` for a first-party app, which the operator declares
    owner_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    client_type: Mapped[str] = mapped_column(sa.String(16))  # confidential | public
    redirect_uris: Mapped[list[str]] = mapped_column(sa.JSON)
    scopes: Mapped[str] = mapped_column(sa.Text)  # the most the app may ask for
    grant_types: Mapped[list[str]] = mapped_column(sa.JSON)
    #: the organisation's own app (its website): people are not asked to consent to it
    first_party: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    #: where ``/oauth/logout`` may send the browser back to, exactly
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(
        sa.JSON, default=list, server_default="[]"
    )
    #: RFC 8707: the organisation's services this app may ask tokens for (the operator's)
    resources: Mapped[list[str]] = mapped_column(sa.JSON, default=list, server_default="[]")
    #: ``opaque`` or ``jwt`` (RFC 9068: other services check them offline)
    access_token_format: Mapped[str] = mapped_column(
        sa.String(8), default="opaque", server_default="opaque"
    )


class SigningKey(Model):
    """A key MARS signs ID tokens with (ES256): the private half sealed, the public half
    published at ``/.well-known/jwks.json`` until every token it signed has expired."""

    __tablename__ = "auth_signing_keys"

    #: the JWK's ``kid`` (its RFC 7638 thumbprint)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(sa.String(16))
    public_jwk: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    private_sealed: Mapped[str] = mapped_column(sa.Text, info={"sealed": True})
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    #: when a newer key replaced it; it stays published for as long as a token may live
    retired_at: Mapped[dt.datetime | None]


class AuthorizationCode(Model):
    __tablename__ = "auth_authorization_codes"
    #: a nonce is looked up to refuse a replayed authorization request
    __table_args__ = (
        sa.Index("ix_auth_authorization_codes_client_id_nonce", "client_id", "nonce"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("auth_users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(sa.Text)
    scope: Mapped[str] = mapped_column(sa.Text)
    code_challenge: Mapped[str] = mapped_column(sa.String(128))
    code_challenge_method: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    #: the token family issued for this code: revoked if the code is used twice.
    family_id: Mapped[str | None] = mapped_column(sa.String(40))
    #: OpenID Connect: the request's ``nonce``, and when the user last signed in
    nonce: Mapped[str | None] = mapped_column(sa.String(255))
    auth_time: Mapped[dt.datetime | None]
    #: RFC 8707: the services (resource indicators) the app asked tokens for
    resources: Mapped[list[str] | None] = mapped_column(sa.JSON)


class OAuthToken(Model):
    """An access token and (for user grants) its refresh token; one row per rotation."""

    __tablename__ = "auth_oauth_tokens"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("tok"))
    client_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(sa.Text)
    access_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    refresh_digest: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: every token descended from one authorization shares a family: reuse kills it whole.
    family_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    access_expires_at: Mapped[dt.datetime]
    refresh_expires_at: Mapped[dt.datetime | None]
    #: RFC 8707: the services this token (a JWT access token) is for; ``None``: MARS itself
    resources: Mapped[list[str] | None] = mapped_column(sa.JSON)
    #: set when the refresh token was exchanged for a new pair.
    rotated_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class OAuthConsent(Model):
    """The scopes a user allowed a confidential app: the consent page is not shown again for
    them, only for more. Revoked by the user (``/api/v1/me/authorizations``), or gone with
    the app."""

    __tablename__ = "auth_oauth_consents"

    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_oauth_clients.client_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    scope: Mapped[str] = mapped_column(sa.Text)
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


EXPORT_STATUSES = ("pending", "ready", "downloaded", "expired", "failed")


class DataExport(Model):
    """A person's export of their data (``POST /api/v1/me/export``).

    The ZIP is encrypted under a key derived from the download link's token, which is kept
    only as a hash, and sealed in the queued mail until it is sent: from then on neither a
    copy of the database nor MARS's own keys open it. It is deleted once downloaded or when
    the link expires; the row stays as the export's status.
    """

    __tablename__ = "auth_data_exports"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'ready', 'downloaded', 'expired', 'failed')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True, default=lambda: new_id("exp"))
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    #: the long-running operation the person polls (``/api/v1/operations/{id}``)
    operation_id: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    downloaded_at: Mapped[dt.datetime | None]
    #: SHA-256 of the link's token
    digest: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: the ZIP, Fernet-encrypted under a key derived from the link's token
    content: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    size: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.String(500))
