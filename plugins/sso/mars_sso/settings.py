"""The plugin's settings: the identity providers, in ``[plugins.sso]`` of the config file
(``[[plugins.sso.providers]]`` tables) or ``MARS_SSO__PROVIDERS`` (a JSON list)."""

from __future__ import annotations

import json
import re
from typing import Any

import marshmallow as ma
from authlib.common.security import is_secure_transport

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
DOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9-]+(\.[a-z0-9-]+)+")


class _Strings(ma.fields.List):
    """A list of strings, which the environment may give as ``a,b,c``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ma.fields.String(validate=ma.validate.Length(min=1, max=255)), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return super()._deserialize(value, attr, data, **kwargs)


class RoleRuleSchema(ma.Schema):
    """``{claim = "groups", value = "mars-admins", role = "admin"}``: a person whose claim (a
    SAML attribute) holds ``value`` has ``role``; one whose claim does not, loses it."""

    claim = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    value = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    role = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))


class ProviderSchema(ma.Schema):
    """One identity provider."""

    name = ma.fields.String(required=True, validate=ma.validate.Regexp(NAME))
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(["oidc", "saml"]))
    label = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=80))
    # OpenID Connect
    issuer = ma.fields.String(load_default=None)
    client_id = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=255))
    client_secret = ma.fields.String(load_default=None, load_only=True)
    scopes = _Strings(load_default=lambda: ["openid", "email", "profile"])
    # SAML 2.0: the identity provider's metadata, as XML or the path of a file holding it
    idp_metadata = ma.fields.String(load_default=None)
    allow_idp_initiated = ma.fields.Boolean(load_default=False)
    #: the NameID MARS asks for: one that stays the person's (never ``transient``)
    name_id_format = ma.fields.String(
        load_default="persistent",
        validate=ma.validate.OneOf(["persistent", "emailAddress", "unspecified"]),
    )
    clock_skew_seconds = ma.fields.Integer(load_default=60, validate=ma.validate.Range(0, 300))
    # Both
    #: the claim (SAML attribute) holding the e-mail address, and the display name
    email_claim = ma.fields.String(load_default=None)
    name_claim = ma.fields.String(load_default=None)
    #: the provider vouches for every address it sends (a SAML IdP of the organisation's own
    #: directory); an OpenID provider otherwise says so with ``email_verified``
    trust_email = ma.fields.Boolean(load_default=False)
    create_accounts = ma.fields.Boolean(load_default=True)
    #: e-mail domains whose people must sign in here: their password is refused
    domains = _Strings(load_default=list)
    roles = ma.fields.List(ma.fields.Nested(RoleRuleSchema), load_default=list)

    @ma.validates_schema
    def _complete(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["kind"] == "oidc":
            missing = [key for key in ("issuer", "client_id") if not data.get(key)]
            if missing:
                raise ma.ValidationError(f"an OpenID Connect provider needs {', '.join(missing)}")
            if not is_secure_transport(data["issuer"]):
                raise ma.ValidationError("issuer must be an https:// address", "issuer")
            if "openid" not in data["scopes"]:
                raise ma.ValidationError("must include openid", "scopes")
        elif not data.get("idp_metadata"):
            raise ma.ValidationError("a SAML provider needs idp_metadata", "idp_metadata")
        bad = [domain for domain in data["domains"] if not DOMAIN.fullmatch(domain.lower())]
        if bad:
            raise ma.ValidationError(f"not e-mail domains: {', '.join(bad)}", "domains")

    @ma.post_load
    def _defaults(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        saml = data["kind"] == "saml"
        data["label"] = data["label"] or f"Sign in with {data['name']}"
        data["email_claim"] = data["email_claim"] or ("mail" if saml else "email")
        data["name_claim"] = data["name_claim"] or ("displayName" if saml else "name")
        data["domains"] = [domain.lower() for domain in data["domains"]]
        return data


class _Providers(ma.fields.List):
    """The providers, which the environment gives as a JSON list."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ma.ValidationError("not a JSON list of providers") from None
        return super()._deserialize(value, attr, data, **kwargs)


class SsoSettingsSchema(ma.Schema):
    providers = _Providers(ma.fields.Nested(ProviderSchema), load_default=list)
    #: how long a person has to sign in at the identity provider
    request_minutes = ma.fields.Integer(load_default=10, validate=ma.validate.Range(1, 60))

    @ma.validates_schema
    def _unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        names = [provider["name"] for provider in data["providers"]]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ma.ValidationError(f"provider names used twice: {', '.join(twice)}", "providers")
        domains = [d for provider in data["providers"] for d in provider["domains"]]
        twice = sorted({domain for domain in domains if domains.count(domain) > 1})
        if twice:
            raise ma.ValidationError(
                f"domains given to two providers: {', '.join(twice)}", "providers"
            )
