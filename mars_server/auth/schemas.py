"""Request and response schemas of the accounts, tokens and users API."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from mars_server.auth.models import EXPORT_STATUSES, ROLES, USER_STATUSES
from mars_server.auth.passwords import MAX_LENGTH
from mars_server.config import CommaList
from mars_server.http import SECRET, PageArgsSchema, page_schema

Password = ma.fields.String  # length and strength are checked by the service, with reasons


class MeSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True)
    email = ma.fields.Email(dump_only=True)
    display_name = ma.fields.String(dump_only=True)  # changed through MeUpdateSchema
    status = ma.fields.String(dump_only=True, metadata={"enum": list(USER_STATUSES)})
    roles = ma.fields.Method(
        "_roles", dump_only=True, metadata={"type": "array", "items": {"type": "string"}}
    )
    must_change_password = ma.fields.Boolean(dump_only=True)
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    last_login_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    deletion_due_at = ma.fields.AwareDateTime(
        dump_only=True,
        format="iso",
        allow_none=True,
        metadata={"description": "When the account is erased, if its deletion was asked for."},
    )

    def _roles(self, user: object) -> list[str]:
        return sorted(getattr(user, "role_names", ()))


class AccountDeletionSchema(ma.Schema):
    password = ma.fields.String(
        load_only=True,
        validate=ma.validate.Length(max=512),
        metadata={
            "description": "Your current password. An account that signs in through single "
            "sign-on sends none, and calls with the token of a sign-in made in the last 10 "
            "minutes instead."
        },
    )


class DeletionScheduledSchema(ma.Schema):
    deletion_due_at = ma.fields.AwareDateTime(
        required=True,
        format="iso",
        metadata={"description": "When the account is erased, unless you sign in before."},
    )


class DataExportSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True)
    status = ma.fields.String(
        dump_only=True,
        metadata={
            "enum": list(EXPORT_STATUSES),
            "description": "`pending` while it is made; `ready`: the download link was "
            "e-mailed to you; `downloaded`, `expired` (the file is deleted) or `failed`.",
        },
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    ready_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    expires_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    downloaded_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    size = ma.fields.Integer(dump_only=True, allow_none=True, metadata={"description": "Bytes."})
    error = ma.fields.String(dump_only=True, allow_none=True)


class DataExportListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DataExportSchema), required=True)


class MeUpdateSchema(ma.Schema):
    display_name = ma.fields.String(validate=ma.validate.Length(max=100))


class UserSchema(MeSchema):
    """A user, as admins see it."""


UserPageSchema = page_schema(UserSchema, "UserPage")


class UserQueryArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(USER_STATUSES))


class PasswordChangeSchema(ma.Schema):
    current_password = Password(
        required=True, validate=ma.validate.Length(max=MAX_LENGTH * 4), load_only=True
    )
    new_password = Password(
        required=True, validate=ma.validate.Length(max=MAX_LENGTH * 4), load_only=True
    )


class TokenSchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    hint = ma.fields.String(
        dump_only=True,
        metadata={"description": "The token's first characters, to tell tokens apart."},
    )
    scopes = ma.fields.Method(
        "_scopes",
        deserialize="_load_scopes",
        required=True,
        metadata={"type": "array", "items": {"type": "string"}},
    )
    expires_in_days = ma.fields.Integer(
        strict=True,  # 3.5 or "30" is a client's mistake, not 3 or 30 days
        load_only=True,
        validate=ma.validate.Range(min=1),
        metadata={"description": "Default 90; capped by the server's maximum."},
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    expires_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    last_used_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    last_used_ip = ma.fields.String(dump_only=True, allow_none=True)
    revoked_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)
    issued_by_client_id = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The OAuth app that created it for you (with `account:tokens`): "
            "it is revoked when you take back what you allowed that app. Null when you did."
        },
    )

    def _scopes(self, token: object) -> list[str]:
        return str(getattr(token, "scopes", "")).split()

    def _load_scopes(self, value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ma.ValidationError("Send a list of scope names.")
        if not value:
            raise ma.ValidationError("Name at least one scope.")
        return value


class NewTokenSchema(TokenSchema):
    """The token as created: the only time its secret is shown."""

    token = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The token itself. It is shown this once and never again.",
            SECRET: True,
        },
    )


class TokenListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(TokenSchema), required=True)


class RoleSchema(ma.Schema):
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))


class AuthSettingsSchema(ma.Schema):
    pat_default_days = ma.fields.Integer(load_default=90, validate=ma.validate.Range(min=1))
    pat_max_days = ma.fields.Integer(load_default=365, validate=ma.validate.Range(min=1))
    access_token_minutes = ma.fields.Integer(
        load_default=15, validate=ma.validate.Range(min=1, max=1440)
    )
    refresh_token_days = ma.fields.Integer(load_default=30, validate=ma.validate.Range(min=1))
    authorization_code_seconds = ma.fields.Integer(
        load_default=60, validate=ma.validate.Range(min=10, max=600)
    )
    verify_link_hours = ma.fields.Integer(load_default=48, validate=ma.validate.Range(min=1))
    reset_link_minutes = ma.fields.Integer(load_default=30, validate=ma.validate.Range(min=5))
    login_window_minutes = ma.fields.Integer(load_default=15, validate=ma.validate.Range(min=1))
    login_failures_per_account = ma.fields.Integer(
        load_default=5, validate=ma.validate.Range(min=1)
    )
    login_failures_per_address = ma.fields.Integer(
        load_default=20, validate=ma.validate.Range(min=1)
    )
    client_secret_grace_minutes = ma.fields.Integer(
        load_default=60,
        validate=ma.validate.Range(min=0, max=7 * 24 * 60),
        metadata={"description": "How long an OAuth app's previous secret works after rotation."},
    )
    client_auth_window_minutes = ma.fields.Integer(
        load_default=15,
        validate=ma.validate.Range(min=1),
        metadata={"description": "The window failed OAuth client authentications count over."},
    )
    # Higher than per address: anyone who knows a client_id (it is public) can spend the
    # client's allowance and lock the app out of /oauth/token.
    client_auth_failures_per_client = ma.fields.Integer(
        load_default=30, validate=ma.validate.Range(min=1)
    )
    client_auth_failures_per_address = ma.fields.Integer(
        load_default=20, validate=ma.validate.Range(min=1)
    )
    account_mail_window_minutes = ma.fields.Integer(
        load_default=60,
        validate=ma.validate.Range(min=1),
        metadata={"description": "The window account e-mails asked for count over."},
    )
    account_mails_per_recipient = ma.fields.Integer(
        load_default=3,
        validate=ma.validate.Range(min=1),
        metadata={"description": "Verification and reset e-mails one address may get per window."},
    )
    account_mail_requests_per_address = ma.fields.Integer(
        load_default=10,
        validate=ma.validate.Range(min=1),
        metadata={"description": "Registrations and reset requests one IP address may make."},
    )
    deletion_grace_days = ma.fields.Integer(
        load_default=14,
        validate=ma.validate.Range(min=0, max=365),
        metadata={
            "description": "Days between a person's request to delete their account and its "
            "erasure; signing in meanwhile cancels it (0: erased within the hour)."
        },
    )
    records_retention_days = ma.fields.Integer(
        load_default=90,
        validate=ma.validate.Range(min=1, max=3650),
        metadata={
            "description": "Days ended credentials are kept after they end: revoked or "
            "expired tokens (with the IP address of their last use), used e-mailed links and "
            "authorization codes, finished data exports."
        },
    )
    export_link_hours = ma.fields.Integer(
        load_default=48,
        validate=ma.validate.Range(min=1, max=24 * 14),
        metadata={"description": "How long the link to a person's data export works (once)."},
    )

    resources = CommaList(
        ma.fields.Url(schemes={"https", "http"}, require_tld=False),
        load_default=list,
        metadata={
            "description": "The organisation's services apps may ask JWT access tokens for "
            "(RFC 8707 resource indicators, e.g. https://notify.example.org)."
        },
    )
    id_token_minutes = ma.fields.Integer(
        load_default=60,
        validate=ma.validate.Range(min=1, max=24 * 60),
        metadata={"description": "How long an OpenID Connect ID token is valid."},
    )

    @ma.validates_schema
    def _days(self, data: dict[str, int], **kwargs: object) -> None:
        if data["pat_default_days"] > data["pat_max_days"]:
            raise ma.ValidationError("must not exceed pat_max_days", "pat_default_days")


class RegistrationSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=320))
    password = Password(
        required=True, load_only=True, validate=ma.validate.Length(max=MAX_LENGTH * 4)
    )
    display_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))


class LinkTokenSchema(ma.Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class PasswordResetRequestSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=320))


class PasswordResetSchema(LinkTokenSchema):
    password = Password(
        required=True, load_only=True, validate=ma.validate.Length(max=MAX_LENGTH * 4)
    )


class AcceptedSchema(ma.Schema):
    detail = ma.fields.String(required=True)


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ma.ValidationError(f"Send a list of {what}.")
    return value


def _with_default(default: list[str] | None, **metadata: Any) -> dict[str, Any]:
    """A list field's keywords: ``default`` for what a new app gets (and the document says)
    when the field is left out; ``None`` for a change, which leaves it as it is."""
    if default is None:
        return {"metadata": metadata}
    return {"load_default": lambda: list(default), "metadata": {"default": default, **metadata}}


def _redirect_uris(default: list[str] | None = None) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=2000)),
        validate=ma.validate.Length(max=10),
        **_with_default(
            default,
            description="Exact URIs, https:// (or http:// on localhost/127.0.0.1); no "
            "fragment, no user name.",
        ),
    )


def _grant_types(default: list[str] | None = None) -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(
            validate=ma.validate.OneOf(
                ("authorization_code", "refresh_token", "client_credentials")
            )
        ),
        validate=ma.validate.Length(min=1),
        **_with_default(default),
    )


class AppSchema(ma.Schema):
    """An OAuth app, as its owner sees it (never its secret)."""

    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True)
    client_id = ma.fields.String(dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    client_type = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(("confidential", "public")),
        metadata={"description": "confidential (a server that keeps a secret) or public."},
    )
    redirect_uris = _redirect_uris(default=[])
    scopes = ma.fields.Method(
        "_scopes",
        deserialize="_load_scopes",
        required=True,
        metadata={
            "type": "array",
            "items": {"type": "string"},
            "description": "The most this app may ask for: declared scopes only.",
        },
    )
    grant_types = _grant_types(default=["authorization_code", "refresh_token"])
    access_token_format = ma.fields.String(
        load_default="opaque",
        validate=ma.validate.OneOf(("opaque", "jwt")),
        metadata={
            "description": "opaque, or jwt: access tokens in RFC 9068's JWT profile, which the "
            "organisation's other services check offline with /.well-known/jwks.json."
        },
    )
    resources = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        metadata={
            "description": "The organisation's services this app may ask JWT access tokens "
            "for (RFC 8707 resource indicators); set by the operator (mars apps resources)."
        },
    )
    previous_secret_expires_at = ma.fields.AwareDateTime(
        dump_only=True,
        format="iso",
        allow_none=True,
        metadata={"description": "Until then, the secret before the last rotation still works."},
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    updated_at = ma.fields.AwareDateTime(dump_only=True, format="iso")

    def _scopes(self, app: object) -> list[str]:
        return str(getattr(app, "scopes", "")).split()

    def _load_scopes(self, value: object) -> list[str]:
        scopes = _string_list(value, "scope names")
        if not scopes:
            raise ma.ValidationError("Name at least one scope.")
        return scopes


class NewAppSchema(AppSchema):
    """The app with its secret: only when created or when the secret is rotated."""

    client_secret = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "Shown this once, never again; null for public apps.",
            SECRET: True,
        },
    )


class AppUpdateSchema(AppSchema):
    class Meta:
        exclude = ("client_type",)

    redirect_uris = _redirect_uris()
    grant_types = _grant_types()
    access_token_format = ma.fields.String(validate=ma.validate.OneOf(("opaque", "jwt")))


class AppListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AppSchema), required=True)


class AuthorizationSchema(ma.Schema):
    """An app you allowed to act for you, and what it may do."""

    class Meta:
        ordered = True

    client_id = ma.fields.String(dump_only=True)
    app_name = ma.fields.String(dump_only=True)
    scopes = ma.fields.List(ma.fields.String(), dump_only=True)
    granted_at = ma.fields.AwareDateTime(dump_only=True, format="iso")


class AuthorizationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuthorizationSchema), dump_only=True)
