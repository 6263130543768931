"""The browser's side of single sign-on, outside ``/api/v1``: ``/sso/<provider>/...``.

- ``start``: from MARS's sign-in page to the identity provider;
- ``callback`` (OpenID Connect) and ``acs`` (SAML's assertion consumer service): back from it;
- ``metadata``: MARS's SAML service provider metadata, for the identity provider's operator;
- ``link``: the person confirms linking an identity to their MARS account.

Every refusal is a page that says what happened and changes nothing of any account.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, redirect, render_template, request
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS

from mars_server.db import utcnow
from mars_server.http import MarsError
from mars_server.http.headers import add_page_headers
from mars_sso import oidc, saml, services
from mars_sso.oidc import ProviderError

if TYPE_CHECKING:
    from mars_sso.services import Outcome

blueprint = Blueprint("sso_pages", __name__, template_folder="templates")

#: how long MARS remembers a SAML assertion it accepted, to refuse it again
SEEN_ASSERTION_DAYS = 1


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
            found, next_url=request.args.get("next"), binding=request.args.get("binding")
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
    row = services.take_request(found, request.args.get("state"))
    if row is None:
        return _error(EXPIRED)
    if request.args.get("error"):
        reason = request.args["error"][:64]
        return _error(f"{found['label']} did not sign you in ({reason}).")
    code = request.args.get("code", "")[:2048]
    if not code or row.nonce is None or row.code_verifier is None:
        return _error(f"{found['label']} sent you back without a sign-in.")
    try:
        claims = oidc.identity(
            found, code, services.callback_url(found), row.nonce, row.code_verifier
        )
        return _respond(services.complete(found, row, str(claims["sub"]), claims))
    except ProviderError as error:
        return _error(str(error))


@blueprint.route("/sso/<name>/acs", methods=["POST"])
def acs(name: str) -> Any:
    found = _provider(name, "saml")
    if found is None:
        return _error(NOT_FOUND, 404)
    row = services.take_request(found, request.form.get("RelayState"))
    if row is None and not found["allow_idp_initiated"]:
        return _error(EXPIRED)
    try:
        response = saml.parse(
            found,
            request.form.get("SAMLResponse", "")[:1_000_000],
            row.saml_request_id if row is not None else None,
        )
        until = utcnow() + dt.timedelta(days=SEEN_ASSERTION_DAYS)
        services.remember_assertion(found, str(response.assertion.id), until)
        claims: dict[str, Any] = dict(saml.attributes(response))
        name_id = response.name_id
        if found["email_claim"] not in claims and name_id.format == NAMEID_FORMAT_EMAILADDRESS:
            claims[found["email_claim"]] = [name_id.text]
        return _respond(services.complete(found, row, str(name_id.text), claims))
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
    if request.form.get("action") != "link":
        return _page("message.html", message="Nothing was linked.")
    try:
        services.confirm_link(
            found, request.form.get("request_id", ""), request.form.get("token", "")[:256]
        )
    except MarsError as error:
        return _error(str(error.detail), error.status)
    return _page(
        "message.html", message=f"Done: you can now sign in to MARS with {found['label']}."
    )
