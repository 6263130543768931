"""The exceptions the SDK raises, built from MARS's RFC 9457 problem documents.

Every failure is a :class:`MarsError`; the HTTP status picks the subclass. Each carries the
status (``None`` when no answer came), the problem document and the request id, which is
what to quote when you contact the operators of a MARS.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from requests.structures import CaseInsensitiveDict

if TYPE_CHECKING:
    from collections.abc import Mapping

    import requests


@dataclass(frozen=True, slots=True)
class FieldError:
    """One entry of a validation problem's ``errors``: what is wrong, and where."""

    pointer: str
    detail: str
    location: str


class MarsError(Exception):
    """Something went wrong calling MARS.

    :ivar status: the HTTP status, or ``None`` if no answer came.
    :ivar problem: the problem document MARS answered with (empty if none).
    :ivar request_id: the request's id (``X-Request-ID``), to quote when asking for help.
    :ivar headers: the answer's headers.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        self.request_id = request_id
        self.headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers or {})

    @property
    def type(self) -> str | None:
        """The problem's ``type`` URI, e.g. ``urn:mars:problem:conflict``."""
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    @property
    def detail(self) -> str | None:
        value = self.problem.get("detail")
        return value if isinstance(value, str) else None

    def __str__(self) -> str:
        suffix = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.message}{suffix}"


class MarsConnectionError(MarsError):
    """No answer came: the connection failed or was reset."""


class MarsTimeoutError(MarsConnectionError):
    """No answer came in time (the client's ``timeout``)."""


class OperationFailed(MarsError):
    """A long-running operation ended in failure (:meth:`MarsClient.wait`): :attr:`problem`
    says why, :attr:`operation` is the operation as MARS last showed it."""

    def __init__(self, operation: Any) -> None:
        problem = dict(operation.error or {})
        detail = problem.get("detail") or problem.get("title") or "it failed"
        super().__init__(
            f"operation {operation.id} ({operation.kind}) failed: {detail}",
            status=problem.get("status"),
            problem=problem,
        )
        self.operation = operation


class BadRequest(MarsError):
    """400, and the 4xx statuses without a class of their own (405, 413, 415, 428)."""


class AuthenticationError(MarsError):
    """401: no credentials, or credentials that are unknown, expired or revoked."""


class PermissionDenied(MarsError):
    """403: the token lacks a scope, or the user a permission."""


class NotFound(MarsError):
    """404: no such thing, or one you may not see."""


class Conflict(MarsError):
    """409: a conflict with the current state (a taken slug, a request still running)."""


class PreconditionFailed(MarsError):
    """412: the ``If-Match`` ETag is no longer current; fetch the resource again."""


class ValidationError(MarsError):
    """422: the request is not valid; :attr:`errors` says what to correct."""

    @property
    def errors(self) -> list[FieldError]:
        entries = self.problem.get("errors")
        if not isinstance(entries, list):
            return []
        return [
            FieldError(
                pointer=str(entry.get("pointer", "")),
                detail=str(entry.get("detail", "")),
                location=str(entry.get("location", "")),
            )
            for entry in entries
            if isinstance(entry, dict)
        ]


class RateLimited(MarsError):
    """429: too many requests; :attr:`retry_after` says how many seconds to wait."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class ServerError(MarsError):
    """5xx: MARS failed; quote :attr:`request_id` if it goes on."""


class GraphQLError(MarsError):
    """A GraphQL answer with ``errors`` (:meth:`MarsClient.graphql`).

    :ivar errors: every error, as MARS sent it (``message``, ``path``, ``extensions``, whose
        ``type``, ``title`` and ``status`` are the problem's).
    :ivar data: what the operation did return beside the errors (``None`` if nothing).
    :attr:`status` and :attr:`problem` are the first error's.
    """

    def __init__(
        self,
        errors: list[dict[str, Any]],
        data: dict[str, Any] | None,
        *,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        first: dict[str, Any] = errors[0] if errors else {"message": "the answer has no data"}
        extensions = first.get("extensions")
        problem: dict[str, Any] = dict(extensions) if isinstance(extensions, dict) else {}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = ".".join(str(step) for step in first.get("path") or ())
        message = f"{where}: {first.get('message')}" if where else str(first.get("message"))
        super().__init__(
            message + more,
            status=problem.get("status") if isinstance(problem.get("status"), int) else None,
            problem=problem,
            request_id=request_id,
            headers=headers,
        )
        self.errors = errors
        self.data = data


class OAuthError(MarsError):
    """The OAuth token endpoint refused (RFC 6749 section 5.2): see :attr:`error`."""

    @property
    def error(self) -> str | None:
        value = self.problem.get("error")
        return value if isinstance(value, str) else None


class UnexpectedResponse(MarsError):
    """MARS answered with something the SDK cannot read (a newer server, a proxy's page)."""


_BY_STATUS: dict[int, type[MarsError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: ValidationError,
    429: RateLimited,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_class(status: int) -> type[MarsError]:
    """The exception class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return BadRequest if 400 <= status < 500 else UnexpectedResponse


def error_from_response(response: requests.Response, request_id: str | None) -> MarsError:
    """The :class:`MarsError` for a failed ``response`` (problem+json or anything else)."""
    problem: dict[str, Any] = {}
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        problem = document
    title = str(problem.get("title") or response.reason or "Error").rstrip(".")
    detail = problem.get("detail") or problem.get("error_description") or problem.get("error")
    message = f"{response.status_code} {title}" + (f": {detail}" if detail else "")
    fields = problem.get("errors")
    if isinstance(fields, list) and fields:
        message += " " + "; ".join(
            f"{e.get('pointer')}: {e.get('detail')}" for e in fields if isinstance(e, dict)
        )
    return error_class(response.status_code)(
        message,
        status=response.status_code,
        problem=problem,
        request_id=problem.get("request_id") or response.headers.get("X-Request-ID") or request_id,
        headers=response.headers,
    )
