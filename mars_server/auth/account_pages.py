"""The account pages: ``/accounts/register`` and ``/accounts/forgot-password`` (linked from the
sign-in page), and those the links in account e-mails open, ``/accounts/verify`` and
``/accounts/reset-password``.

Opening a link only shows a form; the POST does the work. Mail scanners that fetch every link
in a message therefore never use one up. The link's single-use token travels in the form and is
the form's anti-forgery secret: a third party cannot post it without having read the mail. The
two forms anyone may fill in carry a token that must match a cookie of this browser
(``mars_form``, ``SameSite=Strict``): another site cannot post them for someone.

``next``: the sign-in the person came from (an ``/oauth/authorize`` request of this server,
nothing else), carried through registration and the verification mail, so that "Sign in"
takes them back to the app that sent them. Without one, "Sign in" leads to ``MARS_WEBSITE_URL``.
The services called commit what a POST changes, and keep nothing of a refused one.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, current_app, make_response, render_template, request

from mars_server.auth import apps, emails, example_site, pages, privacy
from mars_server.http import MarsError

blueprint = Blueprint("account_pages", __name__, template_folder="templates")
blueprint.after_request(pages.add_page_headers)

TOKEN_MAX = 128  # tokens are 43 characters; anything far longer is not one of ours


def _token() -> str:
    source = request.form if request.method == "POST" else request.args
    return source.get("token", "")[:TOKEN_MAX]


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"accounts/{template}", **context), status


def _invalid_link() -> tuple[str, int]:
    return _page("message.html", 400, title="This link no longer works", text=emails.INVALID_LINK)


FORM_COOKIE = "mars_form"
NEXT_MAX = 2000


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a sign-in of this server (``/oauth/authorize?...``) for a first-party
    app, without ``prompt`` (a sign-in page must show), else ``None``: a link in MARS's mail
    never leads anywhere the organisation did not register."""
    if (
        not value
        or len(value) > NEXT_MAX
        or not value.startswith("/oauth/authorize?")
        or any(char in value for char in "\\\r\n")
    ):
        return None
    query = parse_qs(value.partition("?")[2])
    client_id = query.get("client_id", [""])[0]
    app = apps.by_client_id(client_id)
    if app is None or not app.first_party or "prompt" in query:
        return None
    return value


def _next() -> str | None:
    return safe_next(request.values.get("next"))


def _sign_in_url(next_path: str | None) -> str | None:
    """Where "Sign in" leads: the sign-in the person came from, else the website."""
    return next_path or current_app.config["MARS"]["WEBSITE_URL"] or example_site.website_url()


def _form(template: str, status: int = 200, **context: Any) -> Response:
    """A form anyone may fill in, with its anti-forgery token (a cookie and a field)."""
    token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
    response = make_response(
        render_template(f"accounts/{template}", form_token=token, next=_next(), **context), status
    )
    response.set_cookie(
        FORM_COOKIE,
        token,
        path="/accounts",
        httponly=True,
        samesite="Strict",
        secure=bool(current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure),
    )
    return response


def _form_token_ok() -> bool:
    sent = request.form.get("form_token", "")
    expected = request.cookies.get(FORM_COOKIE, "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


EXPIRED_FORM = "This form has expired; please fill it in again."


@blueprint.route("/accounts/register", methods=["GET", "POST"])
def register() -> Any:
    if request.method == "GET":
        return _form("register.html")
    email = request.form.get("email", "")[:320].strip()
    display_name = request.form.get("display_name", "")[:100].strip()
    if not _form_token_ok():
        return _form(
            "register.html", 400, email=email, display_name=display_name, message=EXPIRED_FORM
        )
    try:
        emails.register(
            email,
            request.form.get("password", "")[:512],
            display_name,
            request.remote_addr,
            next_path=_next(),
        )
    except MarsError as error:
        message = pages.form_error_message(error)
        if message is None:
            raise
        status = error.status if error.status == 429 else 422
        response = _form(
            "register.html", status, email=email, display_name=display_name, message=message
        )
        response.headers.update(error.headers)
        return response
    return _page(
        "message.html",
        title="Check your mail",
        text=f"If {email} can receive it, a link to confirm the address is on its way. "
        "Open it to activate your account.",
    )


@blueprint.route("/accounts/forgot-password", methods=["GET", "POST"])
def forgot_password() -> Any:
    if request.method == "GET":
        return _form("forgot_password.html")
    email = request.form.get("email", "")[:320].strip()
    if not _form_token_ok():
        return _form("forgot_password.html", 400, email=email, message=EXPIRED_FORM)
    try:
        emails.request_password_reset(email, request.remote_addr)
    except MarsError as error:
        message = pages.form_error_message(error)
        if message is None:
            raise
        response = _form("forgot_password.html", error.status, email=email, message=message)
        response.headers.update(error.headers)
        return response
    return _page(
        "message.html",
        title="Check your mail",
        text=f"If {email} has a MARS account, a link to choose a new password is on its way.",
        sign_in_url=_sign_in_url(_next()),
    )


@blueprint.route("/accounts/verify", methods=["GET", "POST"])
def verify() -> tuple[str, int]:
    token = _token()
    if request.method == "GET":
        if not emails.link_is_usable(token, emails.VERIFY):
            return _invalid_link()
        return _page("verify.html", token=token, next=_next())
    try:
        emails.verify_email(token)
    except MarsError:
        return _invalid_link()
    return _page(
        "message.html",
        title="Your address is confirmed",
        text="Your MARS account is ready: you can sign in now.",
        sign_in_url=_sign_in_url(_next()),
    )


@blueprint.route("/accounts/reset-password", methods=["GET", "POST"])
def reset_password() -> tuple[str, int]:
    token = _token()
    if request.method == "GET":
        if not emails.link_is_usable(token, emails.RESET):
            return _invalid_link()
        return _page("reset_password.html", token=token)
    password = request.form.get("password", "")[:512]
    if password != request.form.get("password_again", "")[:512]:
        return _page("reset_password.html", 422, token=token, message=MISMATCH)
    try:
        emails.reset_password(token, password)
    except MarsError as error:
        message = pages.form_error_message(error)
        if message is None:
            raise
        if message == emails.INVALID_LINK:
            return _invalid_link()
        return _page("reset_password.html", 422, token=token, message=message)
    return _page(
        "message.html",
        title="Your password is changed",
        text="Sign in with your new password. Every token of your account was revoked.",
    )


MISMATCH = "The two passwords differ."


@blueprint.route("/accounts/export", methods=["GET", "POST"])
def download_export() -> Any:
    """The link of a data export's mail: a page with a button (a mail scanner that opens the
    link uses nothing up), whose POST sends the ZIP once."""
    token = _token()
    if request.method == "GET":
        if not privacy.export_link_is_usable(token):
            return _page(
                "message.html", 400, title="This link no longer works", text=INVALID_EXPORT
            )
        return _page("export.html", token=token)
    try:
        data = privacy.download_export(token)
    except MarsError:
        return _page("message.html", 400, title="This link no longer works", text=INVALID_EXPORT)
    response = make_response(data)
    response.headers["Content-Type"] = "application/zip"
    response.headers["Content-Disposition"] = 'attachment; filename="mars-data-export.zip"'
    return response


INVALID_EXPORT = privacy.INVALID_EXPORT_LINK
