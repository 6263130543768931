"""MARS's own limits on a request's URL, header fields and body, answered as problems.

A WSGI server refuses what it cannot parse with a page of its own (gunicorn's is HTML) before
MARS runs. The gunicorn settings MARS ships (:mod:`mars_server.ops.gunicorn_conf`) put the
server's limits above these, so a request over MARS's limits reaches MARS and is answered
here, as problem+json; docs/http.md lists what only the server can still refuse.
"""

from __future__ import annotations

import re
from typing import IO, cast

from flask import Request as FlaskRequest
from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from mars_server.http.problems import BadRequest, MarsError

#: RFC 9110 section 5.5: a field value holds visible characters, spaces and tabs only.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class URITooLong(MarsError):
    status = 414
    title = "URI Too Long"  # RFC 9110's name; Python's is the older "Request-URI Too Long"


class HeaderFieldsTooLarge(MarsError):
    status = 431


def _request_target() -> str:
    """The URL as the client sent it (path and query, still percent-encoded)."""
    environ = request.environ
    return environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path


def _field_name(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "..."


def check_request_head() -> None:
    """before_request: the URL and the header fields within MARS's limits.

    The header fields are counted as the application sees them: a field the client repeated
    is one field, its values joined.
    """
    settings = current_app.config["MARS"]
    if len(_request_target()) > settings["MAX_URL_LENGTH"]:
        raise URITooLong(
            f"The URL is longer than {settings['MAX_URL_LENGTH']} bytes; "
            "send long values in a request body."
        )
    fields = list(request.headers.items())
    if len(fields) > settings["MAX_HEADER_FIELDS"]:
        raise HeaderFieldsTooLarge(
            f"The request has more than {settings['MAX_HEADER_FIELDS']} header fields."
        )
    for name, value in fields:
        if len(name) + len(value) > settings["MAX_HEADER_FIELD_SIZE"]:
            raise HeaderFieldsTooLarge(
                f"The header field {_field_name(name)} is larger than "
                f"{settings['MAX_HEADER_FIELD_SIZE']} bytes."
            )
        # gunicorn refuses these itself; other servers (werkzeug's) pass them on.
        if _CONTROL_CHARACTER.search(value):
            raise BadRequest(f"The header field {_field_name(name)} holds a control character.")


class _BodyOfUnknownLength(LimitedStream):
    """A body sent without ``Content-Length`` (chunked), read up to ``max_length`` bytes.

    werkzeug's own stream for it stops at the limit without a word, so the request would go
    on with a truncated body (whose JSON then fails to parse: a 400 instead of a 413). This
    one reads one byte further: if it comes, the body is too large.
    """

    def __init__(self, stream: IO[bytes], max_length: int) -> None:
        super().__init__(stream, max_length + 1, is_max=True)

    def readinto(self, buffer: bytearray) -> int | None:  # type: ignore[override]
        try:
            size = super().readinto(buffer)
        except HTTPException:
            raise
        except Exception as exc:
            # gunicorn raises its own parse errors (InvalidChunkSize, ChunkMissingTerminator,
            # ...) from ``wsgi.input`` as the app reads it: the client's fault, not a 500.
            raise BadRequest("The chunked request body is malformed.") from exc
        if self.is_exhausted:
            raise RequestEntityTooLarge()
        return size


class BodyLimitedRequest(FlaskRequest):
    """Flask's request, with ``MAX_CONTENT_LENGTH`` answered as 413 for chunked bodies too.

    The base of the app's request class (:class:`mars_server.http.requests.MarsRequest`).
    """

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if (
            limit is not None
            and self.content_length is None
            and self.environ.get("wsgi.input_terminated")  # the server ends the stream
            and not self.shallow
        ):
            # an io.RawIOBase, typed as werkzeug types its own LimitedStream
            return cast("IO[bytes]", _BodyOfUnknownLength(self.environ["wsgi.input"], limit))
        return super().stream


#: A refused body up to this many times ``MAX_CONTENT_LENGTH`` is read to its end before the 413
#: goes out (deploy/nginx/mars.conf lets through twice the limit).
DISCARD_FACTOR = 4


def discard_refused_body(response: Response) -> Response:
    """after_request: read to its end the body of a request answered 413, up to a bound.

    A server that closes a connection with request bytes still unread makes the kernel reset
    it, and a proxy still sending the body then loses the answer (nginx turns it into a 502).
    gunicorn reads at most 64 KiB of what the app left before it closes, so MARS reads the
    rest itself while it is within :data:`DISCARD_FACTOR` times its limit; a larger body is
    left to the server, which may reset the connection.
    """
    if response.status_code != 413:
        return response
    bound = DISCARD_FACTOR * current_app.config["MARS"]["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None:
        if length > bound:
            return response
        remaining = length
    elif request.environ.get("wsgi.input_terminated"):
        remaining = bound  # a chunked body: the server ends the stream
    else:
        return response
    stream = request.environ["wsgi.input"]
    try:
        # gunicorn's stream stops at the body's end; werkzeug's would wait past it, so never
        # ask for more than is left.
        while remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
    except Exception:  # a client that went away, a malformed chunk: nothing left to save
        current_app.logger.debug("The refused request body could not be read to its end.")
    return response
