"""The pages the links in account e-mails open: ``/accounts/verify`` and
``/accounts/reset-password``.

Opening a link only shows a form; the POST does the work. Mail scanners that fetch every link
in a message therefore never use one up. The link's single-use token travels in the form and is
the form's anti-forgery secret: a third party cannot post it without having read the mail.
The services called commit what a POST changes, and keep nothing of a refused one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from mars_server.auth import emails, pages
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


@blueprint.route("/accounts/verify", methods=["GET", "POST"])
def verify() -> tuple[str, int]:
    token = _token()
    if request.method == "GET":
        if not emails.link_is_usable(token, emails.VERIFY):
            return _invalid_link()
        return _page("verify.html", token=token)
    try:
        emails.verify_email(token)
    except MarsError:
        return _invalid_link()
    return _page(
        "message.html",
        title="Your address is confirmed",
        text="Your MARS account is ready: you can sign in now.",
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
