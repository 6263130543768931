"""What the server-rendered pages share: security headers and form-error messages.

The pages (OAuth sign-in and consent, the links sent by e-mail) work without JavaScript and
can never be framed, cached or leak their address through ``Referer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mars_server.http import MarsError, ValidationFailed

if TYPE_CHECKING:
    from flask import Response

PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'self'"
    ),
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def add_page_headers(response: Response) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def form_error_message(error: Exception) -> str | None:
    """The text to show on a form for a service's refusal (a :class:`MarsError`, its field
    problems for a :class:`ValidationFailed`), or None if it is not one."""
    if isinstance(error, ValidationFailed):
        return " ".join(" ".join(problems) for problems in error.fields.values())
    if isinstance(error, MarsError):
        return str(error.detail)
    return None
