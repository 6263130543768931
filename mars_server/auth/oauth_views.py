"""The OAuth 2 endpoints, outside ``/api/v1``: they speak OAuth's form-encoded requests and
JSON errors (RFC 6749 section 5.2), not problem+json.

- ``/oauth/authorize``: the sign-in and consent pages (server-rendered, no JavaScript);
- ``/oauth/token``, ``/oauth/revoke`` (RFC 7009), ``/oauth/introspect`` (RFC 7662);
- ``/.well-known/oauth-authorization-server`` (RFC 8414).

What a request changes is committed by the service it calls: :mod:`mars_server.auth.signin`
and :mod:`mars_server.auth.oauth`, which runs authlib's side of each request as one unit of
work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    UnsupportedResponseTypeError,
)
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.datastructures import MultiDict
from werkzeug.local import LocalProxy

from mars_server import public_url
from mars_server.auth import consents, example_site, external, oauth, pages, signin, signing_keys
from mars_server.auth.models import User
from mars_server.db import db, utcnow
from mars_server.events import acting_as
from mars_server.events import context as acting_context
from mars_server.http import MarsError
from mars_server.http.headers import allow_form_redirects
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask
    from flask.sessions import SessionMixin

blueprint = Blueprint("oauth", __name__, template_folder="templates")

PAGE_COOKIE = "mars_oauth"
SESSION_USER = "oauth_user_id"
SESSION_CSRF = "oauth_csrf"
#: the user's ``sign_in_stamp`` at sign-in: revoking the user's credentials signs out
SESSION_STAMP = "oauth_sign_in_stamp"
#: ``[client_id, family_id]`` of the authorizations this browser gave: signing out revokes them
SESSION_FAMILIES = "oauth_families"
#: when the user signed in here (epoch seconds): OpenID Connect's ``auth_time``, ``max_age``
SESSION_AUTH_TIME = "oauth_auth_time"
#: the authorization request the user just signed in for (``prompt=login``, ``max_age``)
SESSION_SIGNED_IN_FOR = "oauth_signed_in_for"
#: ties a sign-in elsewhere (single sign-on) to this browser: see :mod:`auth.external`
SESSION_BINDING = "oauth_binding"
#: how many authorizations a page session remembers (the cookie stays small)
MAX_SESSION_FAMILIES = 20


class PageSessionInterface(SecureCookieSessionInterface):
    """The OAuth pages' own signed cookie, ``mars_oauth`` on ``/oauth`` only.

    It is not the app's session: the app's ``SESSION_*`` settings and ``flask.session`` stay
    as they are for other plugins. ``Secure`` whenever the request came over https.
    """

    def get_cookie_name(self, app: Flask) -> str:
        return PAGE_COOKIE

    def get_cookie_path(self, app: Flask) -> str:
        return "/oauth"

    def get_cookie_domain(self, app: Flask) -> str | None:
        return None

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Lax"

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


_page_sessions = PageSessionInterface()
#: The signed-in user and the CSRF token of the OAuth pages (a dict, like ``flask.session``).
session = cast("SessionMixin", LocalProxy(lambda: g.mars_oauth_session))


@blueprint.before_request
def _open_page_session() -> None:
    opened = _page_sessions.open_session(current_app, request)
    g.mars_oauth_session = (
        opened if opened is not None else _page_sessions.make_null_session(current_app)
    )


@blueprint.after_request
def _save_page_session(response: Response) -> Response:
    opened = g.get("mars_oauth_session")
    if opened is not None:
        _page_sessions.save_session(current_app, opened, response)
    return response


blueprint.after_request(pages.add_page_headers)


def _oauth_error(error: OAuth2Error) -> Response:
    status, body, headers = error()
    response = jsonify(dict(body))
    response.status_code = status
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


# --- The sign-in and consent pages -------------------------------------------------------------


def _csrf_token() -> str:
    token = session.get(SESSION_CSRF)
    if not token:
        token = session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return str(token)


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token", "")
    expected = session.get(SESSION_CSRF, "")
    return bool(expected) and hmac.compare_digest(sent.encode(), str(expected).encode())


def _sign_in_as(user: User, for_request: str | None = None) -> None:
    session[SESSION_USER] = user.id
    session[SESSION_STAMP] = user.sign_in_stamp
    session[SESSION_AUTH_TIME] = int(utcnow().timestamp())
    session[SESSION_SIGNED_IN_FOR] = _request_key(for_request)


def _request_key(path: str | None = None) -> str:
    """This authorization request (or the one at ``path``), as the page session remembers it:
    a digest of its parameters, decoded and sorted (the redirect after signing in may encode
    them anew)."""
    args = request.args if path is None else url_parse_args(path)
    items = sorted((k, v) for k, values in args.lists() for v in values)
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


def url_parse_args(path: str) -> MultiDict[str, str]:
    return MultiDict(parse_qsl(urlsplit(path).query, keep_blank_values=True))


MAX_AGE = re.compile(r"[0-9]{1,9}")


def _must_sign_in_again() -> bool:
    """OpenID Connect's ``prompt=login`` and ``max_age``: a sign-in for this very request (it
    counts once), or one recent enough, is needed."""
    if session.get(SESSION_SIGNED_IN_FOR) == _request_key():
        session.pop(SESSION_SIGNED_IN_FOR)
        return False
    if "login" in request.values.get("prompt", "").split():
        return True
    max_age = request.values.get("max_age", "")
    if MAX_AGE.fullmatch(max_age):
        signed_in = int(session.get(SESSION_AUTH_TIME, 0))
        return int(utcnow().timestamp()) - signed_in > int(max_age)
    return False


def _signed_in_user() -> User | None:
    """The user the page session belongs to, while active and not signed out everywhere
    (a new password, a disabled account, an operator's revoke-all)."""
    user_id = session.get(SESSION_USER)
    user = db.session.get(User, user_id) if user_id else None
    if (
        user is None
        or user.status != "active"
        or not hmac.compare_digest(str(session.get(SESSION_STAMP, "")), user.sign_in_stamp)
    ):
        session.pop(SESSION_USER, None)
        session.pop(SESSION_STAMP, None)
        return None
    return user


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"oauth/{template}", csrf_token=_csrf_token(), **context), status


def _login_page(client: oauth.Client, status: int = 200, **context: Any) -> tuple[str, int]:
    """The sign-in page, with the other ways to sign in that plugins offer (single sign-on)."""
    binding = session.get(SESSION_BINDING)
    if not binding:
        binding = session[SESSION_BINDING] = secrets.token_urlsafe(24)
    options = mars_state().plugins.sign_in_options(request.full_path, str(binding))
    return _page("login.html", status, client=client.row, options=options, **context)


def _error_page(error: OAuth2Error) -> tuple[str, int]:
    message, developer_hint = _explain(error)
    return _page(
        "error.html", 400, error=error.error, message=message, developer_hint=developer_hint
    )


#: Parameters an authorization request sends once (RFC 6749 section 3.1).
SINGLE_PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state")


def _explain(error: OAuth2Error) -> tuple[str, str]:
    """What went wrong with an authorization request that cannot go back to its app: a
    sentence for the person who followed the link, and one for the app's developers.

    authlib's descriptions are written for developers, and some read badly (``response_type=
    The response type 'None' is not supported...``): the page says it from the request.
    """
    params = request.values
    repeated = [name for name in SINGLE_PARAMETERS if len(params.getlist(name)) > 1]
    if isinstance(error, UnsupportedResponseTypeError):
        if not params.get("response_type"):
            return (
                "The link that brought you here is incomplete: it does not say what the app "
                "is asking for.",
                "Send response_type=code, client_id, redirect_uri, code_challenge and "
                "code_challenge_method=S256.",
            )
        return (
            "The app that sent you here asked for a kind of sign-in that MARS does not offer.",
            "Only response_type=code (the authorization code flow) is supported.",
        )
    if repeated:
        return (
            "The link that brought you here is malformed: it repeats part of the request.",
            f"Send {', '.join(repeated)} once.",
        )
    if isinstance(error, InvalidClientError):
        if not params.get("client_id"):
            return (
                "The link that brought you here does not say which app sent you.",
                "Send client_id.",
            )
        return (
            "The app that sent you here is not registered with MARS, or its registration "
            "was deleted.",
            "No app has this client_id.",
        )
    if isinstance(error, InvalidRequestError):
        if not params.get("redirect_uri"):
            return (
                "The link that brought you here does not say where to send you back.",
                "Send redirect_uri: one of the app's registered redirect URIs.",
            )
        client = oauth.query_client(params.get("client_id"))
        if client is not None and not client.check_redirect_uri(params["redirect_uri"]):
            return (
                "The app asked MARS to send you back to an address it has not registered, "
                "so MARS will not send you there.",
                "redirect_uri must be one of the app's registered redirect URIs, exactly.",
            )
    return (
        "The app that sent you here made a request that MARS does not accept.",
        error.description or error.error or "",
    )


@blueprint.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    server = oauth.server()
    try:
        # The signed-in user, for OpenID Connect's prompt=none (login_required without one).
        grant = server.get_consent_grant(end_user=_signed_in_user())
    except OAuth2Error as error:
        if error.redirect_uri:  # a valid redirect URI: the client hears of the error
            return server.handle_error_response(None, error)
        return _error_page(error)  # never redirect to a URI that was not registered
    client: oauth.Client = grant.client
    allow_form_redirects()  # the forms' answers go on to the app, and wherever it sends them
    try:
        oauth.requested_resources(client)
    except oauth.InvalidTargetError as error:  # RFC 8707: back to the app, as any error
        return _refuse(grant, error)
    if request.method == "POST" and not _csrf_ok():
        return _page("error.html", 400, error="invalid_request", message=CSRF_MESSAGE)

    action = request.form.get("action") if request.method == "POST" else None
    if action == "sign_in":
        return _sign_in(client)
    if len(request.values.get("nonce", "")) > MAX_NONCE:
        too_long = InvalidRequestError(f"Send a nonce of at most {MAX_NONCE} characters.")
        return _refuse(grant, too_long)
    user = _signed_in_user()
    silent = "none" in request.values.get("prompt", "").split()
    if user is not None and _must_sign_in_again():
        if silent:
            return _refuse(grant, LoginRequiredError)
        return _login_page(client, email=user.email)
    if user is None:
        return _refuse(grant, LoginRequiredError) if silent else _login_page(client)
    if user.must_change_password:
        if silent:  # a page would be needed
            return _refuse(grant, LoginRequiredError)
        if action == "change_password":
            return _change_password(user, client)
        return _page("change_password.html", client=client.row, user=user)
    if action == "approve":
        return _approve(grant, user)
    if action == "deny":
        return oauth.deny(grant, user)
    if action == "sign_out":
        session.pop(SESSION_USER, None)
        return _login_page(client)
    if client.row.first_party:
        # The organisation's own app: no consent page; the consent is recorded all the same.
        return _approve(grant, user)
    prompts = request.values.get("prompt", "").split()
    asks_services = bool(request.values.getlist("resource"))  # consented to each time
    if (
        "consent" not in prompts
        and not asks_services
        and consents.covers(user, client.row, grant.request.scope)
    ):
        # Allowed before, every scope of it: no page, the app gets its code at once.
        return _approve(grant, user, remember=False)
    if silent:  # the consent page is needed, and the app asked for no page at all
        return _refuse(grant, ConsentRequiredError)
    declared = oauth.declared_scopes()
    requested = grant.request.scope.split()
    scopes = [(name, declared.get(name, "")) for name in requested]
    services = sorted(set(request.values.getlist("resource")))
    return _page("consent.html", client=client.row, user=user, scopes=scopes, services=services)


CSRF_MESSAGE = "This form has expired. Go back to the app and start again."


MAX_NONCE = 255


def _refuse(grant: Any, error: type[OAuth2Error] | OAuth2Error) -> Any:
    """Send the browser back to the app with an error (``prompt=none``: OpenID Connect's)."""
    if isinstance(error, type):
        error = error()
    error.redirect_uri, error.state = grant.redirect_uri, grant.request.payload.state
    return oauth.server().handle_error_response(grant.request, error)


def _approve(grant: Any, user: User, *, remember: bool = True) -> Any:
    """:func:`oauth.approve`, and the page session remembers the authorization it gave, so
    that signing out of this browser (``/oauth/logout``) revokes its tokens."""
    signed_in = session.get(SESSION_AUTH_TIME)
    g.mars_auth_time = dt.datetime.fromtimestamp(signed_in, dt.UTC) if signed_in else None
    response = oauth.approve(grant, user, remember=remember)
    family = g.pop("mars_oauth_family", None)
    if family is not None:
        given = list(session.get(SESSION_FAMILIES, []))[-(MAX_SESSION_FAMILIES - 1) :]
        session[SESSION_FAMILIES] = [*given, [grant.client.client_id, family]]
    return response


def _sign_in(client: oauth.Client) -> Any:
    email = request.form.get("email", "")[:320]
    password = request.form.get("password", "")[:512]
    try:
        user = signin.authenticate(email, password, request.remote_addr)
    except signin.SignInFailed as error:
        return _login_page(client, email=email, message=str(error))
    except signin.TooManyAttempts as error:
        body, status = _login_page(client, 429, email=email, message=str(error.detail))
        return Response(body, status, headers=error.headers)
    _start_afresh(user)
    _sign_in_as(user)
    return _see_next_page()


def _start_afresh(user: User) -> None:
    """The same person signing in again keeps what this browser was given (signing out
    revokes it); anyone else starts afresh. A new CSRF token either way."""
    kept = session.get(SESSION_FAMILIES) if session.get(SESSION_USER) == user.id else None
    session.clear()
    if kept:
        session[SESSION_FAMILIES] = kept


@blueprint.route(external.CONTINUE_PATH)
def continue_signed_in() -> Any:
    """Where a sign-in elsewhere (single sign-on) hands the browser over: a link that works
    once, soon, in the browser whose sign-in page started it, for the page it names."""
    next_url = request.args.get("next", "")[:4096]
    user = external.hand_over(
        request.args.get("ticket", "")[:256], str(session.get(SESSION_BINDING, "")), next_url
    )
    if user is None:
        return _page(
            "error.html",
            400,
            error="invalid_request",
            message="This sign-in has expired, was used already, or was started in another "
            "browser. Go back to the app and sign in again.",
        )
    _start_afresh(user)
    _sign_in_as(user, for_request=next_url)
    return redirect(next_url, 303)


def _see_next_page() -> Any:
    """Post/redirect/get: the same authorization request, now for a signed-in user."""
    return redirect(request.full_path, 303)


def _change_password(user: User, client: oauth.Client) -> Any:
    try:
        # Signed in by the session, not a token: the audit entry is theirs all the same.
        with acting_as(dataclasses.replace(acting_context.current(), actor_id=user.id)):
            signin.change_password(
                user,
                request.form.get("current_password", "")[:512],
                request.form.get("new_password", "")[:512],
                request.remote_addr,
            )
    except signin.TooManyAttempts as error:
        body, status = _page(
            "change_password.html", 429, client=client.row, user=user, message=str(error.detail)
        )
        return Response(body, status, headers=error.headers)
    except MarsError as error:
        message = pages.form_error_message(error)
        if message is None:
            raise
        return _page("change_password.html", 422, client=client.row, user=user, message=message)
    _sign_in_as(user)  # this browser stays signed in; every other one is signed out
    return _see_next_page()


# --- Signing out (OpenID Connect RP-Initiated Logout) ------------------------------------------


@blueprint.route("/oauth/logout", methods=["GET", "POST"])
def logout() -> Any:
    """End this browser's MARS sign-in and revoke the tokens the app got through it.

    ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri`` (registered exactly) and
    ``state`` as the OpenID Connect RP-Initiated Logout specification names them. An app
    sending an ID token MARS gave it for the person signed in here signs them out at once;
    for any other request the person confirms (a form), so that no other site can sign them
    out behind their back.
    """
    client_id = request.values.get("client_id") or None
    back_to = request.values.get("post_logout_redirect_uri") or None
    hint = request.values.get("id_token_hint") or None
    hinted = signing_keys.verified_claims(hint[:8192], public_url()) if hint else None
    if hint and (hinted is None or (client_id and hinted.get("aud") != client_id)):
        return _page(
            "error.html",
            400,
            error="invalid_request",
            message="The app that sent you here sent a sign-in MARS did not issue to it.",
            developer_hint="id_token_hint must be an ID token MARS issued to this client_id.",
        )
    client_id = client_id or (hinted or {}).get("aud")
    client = oauth.query_client(client_id) if client_id else None
    if client_id and client is None:
        return _page(
            "error.html",
            400,
            error="invalid_request",
            message="The app that sent you here is not registered with MARS.",
            developer_hint="No app has this client_id.",
        )
    if back_to is not None and (
        client is None or back_to not in client.row.post_logout_redirect_uris
    ):
        return _page(
            "error.html",
            400,
            error="invalid_request",
            message="The app asked MARS to send you back to an address it has not "
            "registered, so MARS will not send you there.",
            developer_hint="post_logout_redirect_uri must be one of the app's registered "
            "post-logout redirect URIs, exactly, and needs client_id.",
        )
    allow_form_redirects()  # the confirmation's answer goes back to the app
    confirmed = request.method == "POST" and request.form.get("action") == "sign_out"
    if confirmed and not _csrf_ok():
        return _page("error.html", 400, error="invalid_request", message=CSRF_MESSAGE)
    user = _signed_in_user()
    # An ID token MARS gave this app for the person signed in here proves the app asks;
    # without one, the person confirms (RP-Initiated Logout, section 2), first-party or not.
    proven = hinted is not None and (user is None or hinted.get("sub") == user.id)
    if not confirmed and not proven:
        return _page("logout.html", client=client.row if client else None)
    families = [
        family
        for given_to, family in session.get(SESSION_FAMILIES, [])
        if client is None or given_to == client.client_id
    ]
    signin.sign_out(user, client, families)
    session.clear()
    if back_to is None:
        website = current_app.config["MARS"]["WEBSITE_URL"] or example_site.website_url()
        return _page("signed_out.html", client=client.row if client else None, website_url=website)
    state = request.values.get("state")
    separator = "&" if "?" in back_to else "?"
    return redirect(back_to + (f"{separator}{urlencode({'state': state})}" if state else ""), 303)


# --- Token, revocation, introspection, metadata -------------------------------------------------


def _endpoint(respond: Callable[[], Response]) -> Response:
    try:
        return respond()
    except OAuth2Error as error:  # raised before authlib could answer (insecure transport)
        return _oauth_error(error)


@blueprint.route("/oauth/token", methods=["POST"])
def token() -> Response:
    return _endpoint(oauth.token_response)


@blueprint.route("/oauth/revoke", methods=["POST"])
def revoke() -> Response:
    return _endpoint(lambda: oauth.endpoint_response("revocation"))


@blueprint.route("/oauth/introspect", methods=["POST"])
def introspect() -> Response:
    return _endpoint(lambda: oauth.endpoint_response("introspection"))


@blueprint.route("/.well-known/oauth-authorization-server")
def server_metadata() -> Response:
    response = jsonify(oauth.metadata(public_url()))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@blueprint.route("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID Connect Discovery 1.0: the same server, described for OpenID Connect clients."""
    response = jsonify(oauth.openid_metadata(public_url()))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@blueprint.route("/.well-known/jwks.json")
def jwks() -> Response:
    """The public keys ID tokens are signed with (RFC 7517). Cached briefly: after a rotation
    the new key must be found before the tokens it signs arrive."""
    response = jsonify(keys=signing_keys.published())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OpenID Connect's UserInfo: the claims of the user an access token with ``openid`` is
    for, as its scopes allow. Errors as RFC 6750 says: 401 with ``WWW-Authenticate``."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    token = oauth.find_token(value.strip(), "access_token") if scheme.lower() == "bearer" else None
    row = token.row if token is not None else None
    user = db.session.get(User, row.user_id) if row is not None and row.user_id else None
    if (
        token is None
        or token.kind != "access"  # never a refresh token
        or token.row.resources  # a token for another service, not for MARS
        or token.is_expired()
        or token.is_revoked()
        or user is None
        or user.status != "active"
    ):
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    if "openid" not in token.get_scope().split():
        return _bearer_error(403, "insufficient_scope", "The access token lacks openid.")
    response = jsonify(oauth.user_claims(user, token.get_scope()))
    response.headers["Cache-Control"] = "no-store"
    return response


def _bearer_error(status: int, error: str, description: str) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["WWW-Authenticate"] = (
        f'Bearer error="{error}", error_description="{description}"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response
