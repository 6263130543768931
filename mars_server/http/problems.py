"""RFC 9457 problem details: one schema, one set of handlers, for every failure.

Views raise :class:`MarsError` subclasses or call :func:`flask_smorest.abort`; they never
build error JSON themselves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from flask import Response, g, json
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flask import Flask

log = logging.getLogger("mars.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:mars:problem:"


class ProblemFieldErrorSchema(ma.Schema):
    detail = ma.fields.String(required=True, metadata={"description": "What is wrong."})
    pointer = ma.fields.String(
        required=True, metadata={"description": "JSON pointer to the field, e.g. `/name`."}
    )
    location = ma.fields.String(
        required=True,
        metadata={"description": "Where the field was sent: json, query, headers, path."},
    )


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem document, as MARS sends for every failure."""

    class Meta:
        ordered = True
        # RFC 9457 section 3.2: a problem type may add extension members, and clients must
        # ignore those they do not know; the document says so (``additionalProperties``).
        unknown = ma.INCLUDE

    type = ma.fields.String(
        required=True,
        metadata={
            "description": "URI naming the kind of problem; `about:blank` when the status says "
            "it all."
        },
    )
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    request_id = ma.fields.String(
        required=True,
        metadata={"description": "The request's id, as in the `X-Request-ID` header and the logs."},
    )
    errors = ma.fields.List(
        ma.fields.Nested(ProblemFieldErrorSchema),
        metadata={"description": "Per-field errors of a 422 validation problem."},
    )
    retry_after = ma.fields.Integer(
        metadata={
            "description": "Of a 429: the seconds to wait before trying again, as in the "
            "`Retry-After` header."
        },
    )
    violated_policies = ma.fields.List(
        ma.fields.String(),
        data_key="violated-policies",
        metadata={
            "description": "Of a 429 `rate-limited` problem: the rate-limit policies whose "
            "quota is used up, as named in the `RateLimit` header."
        },
    )
    scope = ma.fields.String(
        metadata={
            "description": "Of a 403 `insufficient-scope` problem: the scopes the token "
            "lacks, space-separated: those the operation needs, or those a credential it "
            "would issue would carry."
        },
    )


class MarsError(Exception):
    """An error that becomes a problem response. Subclass it, or pass values in."""

    status: int = 500
    type_: str = "about:blank"
    title: str | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        type_: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or "")
        self.detail = detail
        self.status = status or self.status
        self.type_ = type_ or self.type_
        self.title = title or self.title or HTTPStatus(self.status).phrase
        self.headers = headers or {}
        self.extra = extra


class BadRequest(MarsError):
    status = 400


class NotFound(MarsError):
    status = 404


class ValidationFailed(MarsError):
    """422: fields break a rule a service checks (as schema validation would say it).

    ``ValidationFailed({"user_id": ["No active user has this id."]})``; ``location`` says
    where the fields are (``json``, ``query``). The problem lists them in ``errors``, like a
    schema's 422; :attr:`message` reads them as one sentence, for a form or a command.
    """

    status = 422
    type_ = PROBLEM_TYPE_PREFIX + "validation-error"
    title = "Your request is not valid."

    def __init__(self, fields: Mapping[str, str | Sequence[str]], *, location: str = "json"):
        self.fields = {
            name: [problems] if isinstance(problems, str) else list(problems)
            for name, problems in fields.items()
        }
        super().__init__(
            "See `errors` for what to correct.",
            errors=_field_errors({location: self.fields}),
        )

    @property
    def message(self) -> str:
        """Every field's problems, in one line (``name: problem``)."""
        return "; ".join(f"{name}: {' '.join(problems)}" for name, problems in self.fields.items())


class Conflict(MarsError):
    status = 409
    type_ = PROBLEM_TYPE_PREFIX + "conflict"


class PreconditionFailed(MarsError):
    status = 412
    type_ = PROBLEM_TYPE_PREFIX + "precondition-failed"


class PreconditionRequired(MarsError):
    status = 428
    type_ = PROBLEM_TYPE_PREFIX + "precondition-required"


class ServiceUnavailable(MarsError):
    status = 503


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["request_id"] = g.get("request_id", "")
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_errors(messages: Any) -> list[dict[str, str]]:
    """Flatten webargs' ``{location: {field: [msg]}}`` into RFC 9457-style entries."""
    errors: list[dict[str, str]] = []

    def walk(node: Any, location: str, pointer: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, location, f"{pointer}/{key}")
        elif isinstance(node, list) and not all(isinstance(m, str) for m in node):
            for index, value in enumerate(node):
                walk(value, location, f"{pointer}/{index}")
        else:
            for message in node if isinstance(node, list) else [node]:
                errors.append(
                    {"detail": str(message), "pointer": pointer or "/", "location": location}
                )

    if isinstance(messages, dict):
        for location, fields in messages.items():
            walk(fields, location, "")
    return errors


_DETAILS = {
    400: "The request could not be understood.",
    404: "No resource lives at this URL.",
    405: "This resource does not allow that method.",
    413: "The request body is larger than this server accepts.",
    415: "Send the request body as application/json.",
}


def handle_http_exception(error: HTTPException) -> Response:
    original = getattr(error, "original_exception", None)
    if isinstance(error, InternalServerError) and original is not None:
        # Flask wraps what escapes an after_request function; answer it as MARS would.
        return dispatch_exception(original)
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    extra: dict[str, Any] = {}
    messages = data.get("messages") or data.get("errors")
    if status == 422 and messages:
        extra["errors"] = _field_errors(messages)
        return problem_response(
            422,
            type_=PROBLEM_TYPE_PREFIX + "validation-error",
            title="Your request is not valid.",
            detail="See `errors` for what to correct.",
            headers=headers,
            **extra,
        )
    detail = data.get("message")
    if status == 400 and messages:
        detail = " ".join(error["detail"] for error in _field_errors(messages))
    if (
        detail is None
        and error.description
        and not error.description.startswith(
            (
                "The browser (or proxy)",
                "The requested URL",
                "The method is not allowed",
                "The data value transmitted",
                "The server does not support the media type",
            )
        )
    ):
        detail = error.description
    return problem_response(status, detail=detail or _DETAILS.get(status), headers=headers)


def handle_mars_error(error: MarsError) -> Response:
    return problem_response(
        error.status,
        title=error.title,
        detail=error.detail,
        type_=error.type_,
        headers=error.headers,
        **error.extra,
    )


def handle_stale_data(error: StaleDataError) -> Response:
    return handle_mars_error(
        PreconditionFailed("The resource was changed by someone else; fetch it again and retry.")
    )


#: SQLSTATEs of a statement PostgreSQL cancelled after MARS's statement_timeout (57014) or
#: lock_timeout (55P03): the database is busy, not down.
_TIMED_OUT = frozenset({"57014", "55P03"})


def handle_operational_error(error: sa_exc.OperationalError) -> Response:
    # Only the driver's class name is logged: the statement and its parameters may hold data.
    if (
        getattr(error.orig, "sqlstate", None) in _TIMED_OUT
        or "locked" in str(error.orig).lower()  # SQLite, after its busy timeout
    ):
        log.warning("database busy: %s", type(error.orig).__name__)
        detail = "The database is busy; retry shortly."
    else:
        log.error("database unavailable: %s", type(error.orig).__name__)
        detail = "The database is unavailable; retry shortly."
    return problem_response(503, detail=detail, headers={"Retry-After": "1"})


def handle_integrity_error(error: sa_exc.IntegrityError) -> Response:
    log.warning("integrity error: %s", type(error.orig).__name__)
    return problem_response(
        409,
        type_=PROBLEM_TYPE_PREFIX + "conflict",
        detail="The change conflicts with the current state of the data.",
    )


def handle_data_error(error: sa_exc.DataError) -> Response:
    """The database refused a value (out of range, bad encoding): the request's fault."""
    log.warning("data error: %s", type(error.orig).__name__)
    return problem_response(400, detail="A value in the request cannot be stored or compared.")


def handle_recursion(error: RecursionError) -> Response:
    return problem_response(400, detail="The request body is nested too deeply.")


def handle_pool_timeout(error: sa_exc.TimeoutError) -> Response:
    log.error("database connection pool exhausted")
    return problem_response(
        503, detail="The server is busy; retry shortly.", headers={"Retry-After": "1"}
    )


def dispatch_exception(error: BaseException) -> Response:
    """The MARS handler for ``error``, as Flask would choose it."""
    for kind, handler in _HANDLERS:
        if isinstance(error, kind):
            return handler(error)  # type: ignore[operator]
    return handle_unexpected(error)  # type: ignore[arg-type]


def is_known(error: BaseException) -> bool:
    """Whether MARS answers ``error`` with a problem of its own (not a bug's 500)."""
    return any(isinstance(error, kind) for kind, _handler in _HANDLERS)


def known_problem(error: BaseException) -> Response | None:
    """The problem MARS answers ``error`` with when it has a handler of its own (a
    ``MarsError``, a stale write, a database refusal...); ``None`` for a bug. GraphQL's
    errors carry the same problems as REST's answers."""
    for kind, handler in _HANDLERS:
        if isinstance(error, kind):
            return handler(error)  # type: ignore[operator]
    return None


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled %s", type(error).__name__)
    return problem_response(
        500, detail="Something went wrong on our side. Quote the request_id if you contact us."
    )


_HANDLERS: list[tuple[type[BaseException], object]] = [
    (HTTPException, handle_http_exception),
    (MarsError, handle_mars_error),
    (StaleDataError, handle_stale_data),
    (sa_exc.OperationalError, handle_operational_error),
    (sa_exc.IntegrityError, handle_integrity_error),
    (sa_exc.DataError, handle_data_error),
    (sa_exc.TimeoutError, handle_pool_timeout),
    (RecursionError, handle_recursion),
]


def register_problem_handlers(app: Flask) -> None:
    """Answer every failure with problem+json; call after flask-smorest's ``init_app``."""
    for kind, handler in _HANDLERS:
        app.register_error_handler(kind, handler)  # type: ignore[arg-type]
    app.register_error_handler(Exception, handle_unexpected)
