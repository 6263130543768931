"""The browser's side of single sign-on, outside ``/api/v1``: ``/sso/<provider>/...``.

- ``start``: from MARS's sign-in page to the identity provider;
- ``callback`` (OpenID Connect) and ``acs`` (SAML's assertion consumer service): back from it;
- ``metadata``: MARS's SAML service provider metadata, for the identity provider's operator;
- ``link``: the person confirms linking an identity to their MARS account.

Every refusal is a page that says what happened and changes nothing of any account.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, redirect, render_template, request

from mars_server.http import MarsError
from mars_server.http.headers import add_page_headers
from mars_sso import oidc, saml, services
from mars_sso.oidc import ProviderError

if TYPE_CHECKING:
    from mars_sso.services import Outcome

blueprint = Blueprint("sso_pages", __name__, template_folder="templates")

#: the longest SAMLResponse read (base64): assertions are a few kilobytes
MAX_SAML_RESPONSE = 1_000_000


blueprint.after_request(add_page_headers)


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"sso/{template}", **context), status


def _error(message: str, status: int = 400) -> tuple[str, int]:
    """A refusal's page; what the request wrote and did not commit is discarded at its end."""
    return _page("error.html", status, message=message)


def _provider(name: str, kind: str | None = None) -> dict[str, Any] | None:
    try:
        found = services.provider(name)
    except MarsError:
        return None
    return found if kind is None or found["kind"] == kind else None


NOT_FOUND = "MARS knows no such identity provider."
EXPIRED = (
    "This sign-in has expired, or did not start here. Go back to the website and sign in again."
)


def _value(source: Any, name: str, limit: int) -> str:
    """A parameter as a page may use it: at most ``limit`` characters, and never with a NUL
    (no database stores one): such a value counts as absent."""
    value = str(source.get(name, ""))
    return "" if "\x00" in value or len(value) > limit else value


def _respond(outcome: Outcome) -> Any:
    if outcome.redirect is not None:
        return redirect(outcome.redirect, 303)
    assert outcome.page is not None
    status = 400 if outcome.page == "error.html" else 200
    return _page(outcome.page, status, **(outcome.context or {}))


@blueprint.route("/sso/<name>/start")
def start(name: str) -> Any:
    found = _provider(name)
    if found is None:
        return _error(NOT_FOUND, 404)
    try:
        url = services.begin(
            found,
            next_url=_value(request.args, "next", services.MAX_NEXT) or None,
            binding=_value(request.args, "binding", services.MAX_BINDING) or None,
        )
    except ProviderError as error:
        return _error(str(error), 502)
    except MarsError as error:
        return _error(str(error.detail))
    return redirect(url, 303)


@blueprint.route("/sso/<name>/callback")
def callback(name: str) -> Any:
    found = _provider(name, "oidc")
    if found is None:
        return _error(NOT_FOUND, 404)
    row = services.take_request(found, _value(request.args, "state", 64))
    if row is None:
        return _error(EXPIRED)
    if request.args.get("error"):
        reason = re.sub(r"[^a-z_]", "", request.args["error"][:64])
        return _error(f"{found['label']} did not sign you in ({reason}).")
    code = _value(request.args, "code", 2048)
    if not code or row.nonce is None or row.code_verifier is None:
        return _error(f"{found['label']} sent you back without a sign-in.")
    try:
        claims = oidc.identity(
            found,
            code,
            services.callback_url(found),
            row.nonce,
            row.code_verifier,
            signed_in_since=row.created_at if row.fresh else None,
        )
        return _respond(services.complete(found, row, claims["sub"], claims))
    except ProviderError as error:
        return _error(str(error))


@blueprint.route("/sso/<name>/acs", methods=["POST"])
def acs(name: str) -> Any:
    found = _provider(name, "saml")
    if found is None:
        return _error(NOT_FOUND, 404)
    row = services.take_request(found, _value(request.form, "RelayState", 64))
    if row is None and not found["allow_idp_initiated"]:
        return _error(EXPIRED)
    try:
        assertion = saml.parse(
            found,
            _value(request.form, "SAMLResponse", MAX_SAML_RESPONSE),
            row.saml_request_id if row is not None else None,
            signed_in_since=row.created_at if row is not None and row.fresh else None,
        )
        services.remember_assertion(found, assertion.assertion_id, assertion.valid_until)
        return _respond(services.complete(found, row, assertion.subject, dict(assertion.claims)))
    except ProviderError as error:
        return _error(str(error))


@blueprint.route("/sso/<name>/metadata")
def metadata(name: str) -> Any:
    found = _provider(name, "saml")
    if found is None:
        return _error(NOT_FOUND, 404)
    try:
        xml = saml.metadata(found)
    except ProviderError as error:
        return _error(str(error), 503)
    return Response(xml, mimetype="application/samlmetadata+xml")


@blueprint.route("/sso/<name>/link", methods=["POST"])
def link(name: str) -> Any:
    found = _provider(name)
    if found is None:
        return _error(NOT_FOUND, 404)
    request_id = _value(request.form, "request_id", 64)
    token = _value(request.form, "token", 256)
    try:
        if request.form.get("action") != "link":
            services.cancel_link(found, request_id, token)
            return _page("message.html", message="Nothing was linked.")
        services.confirm_link(
            found, request_id, token, request.form.get("password", "")[:512], request.remote_addr
        )
    except MarsError as error:
        return _error(_sentence(error), error.status)
    return _page(
        "message.html", message=f"Done: you can now sign in to MARS with {found['label']}."
    )


def _sentence(error: MarsError) -> str:
    """A service's refusal as a sentence: its fields' problems, or its detail."""
    fields = getattr(error, "fields", None)
    if fields:
        return " ".join(" ".join(problems) for problems in fields.values())
    return str(error.detail)
