"""The single sign-on API: ``/api/v1/sso``. Which providers there are; the sign-ins linked to
your account, linking another and unlinking one."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from mars_server.http import (
    Blueprint,
    Forbidden,
    ServiceUnavailable,
    ValidationFailed,
    current_actor,
)
from mars_sso import services
from mars_sso.oidc import ProviderError
from mars_sso.schemas import IdentityListSchema, LinkRequestSchema, ProviderListSchema

blp = Blueprint(
    "sso",
    __name__,
    url_prefix="/sso",
    description="Single sign-on: the organisation's identity providers, and the sign-ins "
    "linked to your account.",
)


def _user_id() -> str:
    actor = current_actor()
    if actor is None or actor.user_id is None:  # an app's own token: nobody's account
        raise Forbidden("Only a token of a person has linked sign-ins.")
    return actor.user_id


@blp.route("/providers")
class Providers(MethodView):
    @blp.doc(operationId="list_sso_providers", security=[])
    @blp.cache_control(public_max_age=300)
    @blp.response(200, ProviderListSchema)
    def get(self) -> dict[str, Any]:
        """List the identity providers people can sign in with

        Needs no token; anonymous answers may be cached for five minutes. Returns each provider's
        `name` (used in addresses), the `label` its sign-in button shows, and its `kind` (`oidc` or
        `saml`)."""
        return {"items": services.providers()}


@blp.route("/identities")
class Identities(MethodView):
    @blp.requires("account:read")
    @blp.doc(operationId="list_sso_identities")
    @blp.response(200, IdentityListSchema)
    def get(self) -> dict[str, Any]:
        """List the sign-ins at identity providers linked to your account

        Needs `account:read` and a token of a person. Returns your linked identities, oldest
        first, each with its `provider`, the e-mail address the provider last gave and
        `last_sign_in_at`."""
        return {"items": services.identities_of(_user_id())}


@blp.route("/identities/<string:identity_id>")
class IdentityById(MethodView):
    @blp.requires("account:write")
    # a link is no versioned resource: no If-Match
    @blp.doc(operationId="unlink_sso_identity", **{"x-mars-if-match": False})
    @blp.response(204)
    def delete(self, identity_id: str) -> None:
        """Unlink a sign-in from your account

        Needs `account:write`; no `If-Match`. Tokens already issued stay valid, and a later sign-in
        at that provider can link it again when the provider vouches for your e-mail address. An id
        that is not one of your linked sign-ins is 404."""
        services.unlink(_user_id(), identity_id)


@blp.route("/links")
class Links(MethodView):
    @blp.requires("account:write")
    @blp.doc(operationId="start_sso_link")
    @blp.rate_limit("10/minute")
    @blp.arguments(LinkRequestSchema)
    @blp.response(201, LinkRequestSchema)
    def post(self, data: dict[str, str]) -> dict[str, str]:
        """Start linking a sign-in at an identity provider to your account

        The person opens `authorization_url` in their browser, signs in at the provider, and
        confirms on a MARS page with their MARS password: a token alone adds no way in."""
        user_id = _user_id()
        found = next((p for p in services.providers() if p["name"] == data["provider"]), None)
        if found is None:
            raise ValidationFailed({"provider": ["No identity provider has this name."]})
        try:
            url = services.begin(found, link_user_id=user_id)
        except ProviderError as error:
            raise ServiceUnavailable(str(error)) from error
        return {"authorization_url": url}
