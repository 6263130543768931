"""What the server-rendered pages share: security headers (:data:`mars_server.http.headers.
PAGE_HEADERS`) and form-error messages."""

from __future__ import annotations

from mars_server.http import MarsError, ValidationFailed
from mars_server.http.headers import add_page_headers

__all__ = ["add_page_headers", "form_error_message"]


def form_error_message(error: Exception) -> str | None:
    """The text to show on a form for a service's refusal (a :class:`MarsError`, its field
    problems for a :class:`ValidationFailed`), or None if it is not one."""
    if isinstance(error, ValidationFailed):
        return " ".join(" ".join(problems) for problems in error.fields.values())
    if isinstance(error, MarsError):
        return str(error.detail)
    return None
