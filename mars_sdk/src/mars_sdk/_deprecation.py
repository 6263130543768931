"""``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594) headers become a DeprecationWarning."""

from __future__ import annotations

import email.utils
import sys
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests


def _deprecation_date(value: str) -> datetime | None:
    """RFC 9745's structured date, ``@1767225600``."""
    value = value.strip()
    if value.startswith("@") and value[1:].lstrip("-").isdigit():
        return datetime.fromtimestamp(int(value[1:]), UTC)
    return None


def _sunset_date(value: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _stacklevel() -> int:
    """The stack level of the first frame outside ``mars_sdk``: the caller's own code."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("mars_sdk"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_if_deprecated(operation: str, response: requests.Response) -> None:
    """Warn when ``response`` says its operation is deprecated, naming it and the dates."""
    deprecation = response.headers.get("Deprecation")
    if deprecation is None:
        return
    since = _deprecation_date(deprecation)
    message = f"MARS operation {operation} is deprecated"
    if since is not None:
        message += f" since {since.date().isoformat()}"
    sunset = response.headers.get("Sunset")
    when = _sunset_date(sunset) if sunset else None
    if when is not None:
        message += f"; it will be removed on {when.date().isoformat()} (Sunset)"
    warnings.warn(message, DeprecationWarning, stacklevel=_stacklevel())
