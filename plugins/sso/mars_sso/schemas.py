"""The single sign-on API's schemas."""

from __future__ import annotations

import marshmallow as ma


class ProviderSchema(ma.Schema):
    class Meta:
        ordered = True

    name = ma.fields.String(dump_only=True, metadata={"description": "Used in addresses."})
    label = ma.fields.String(dump_only=True, metadata={"description": "What its button says."})
    kind = ma.fields.String(dump_only=True, metadata={"description": "`oidc` or `saml`."})


class ProviderListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ProviderSchema), dump_only=True)


class IdentitySchema(ma.Schema):
    class Meta:
        ordered = True

    id = ma.fields.String(dump_only=True)
    provider = ma.fields.String(dump_only=True)
    email = ma.fields.String(
        dump_only=True, metadata={"description": "The address the provider last gave."}
    )
    created_at = ma.fields.AwareDateTime(dump_only=True, format="iso")
    last_sign_in_at = ma.fields.AwareDateTime(dump_only=True, format="iso", allow_none=True)


class IdentityListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(IdentitySchema), dump_only=True)


class LinkRequestSchema(ma.Schema):
    class Meta:
        ordered = True

    provider = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "The identity provider's name."},
    )
    authorization_url = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Open it in the person's browser: they sign in at the provider, "
            "then confirm the link on a MARS page with their MARS password."
        },
    )
