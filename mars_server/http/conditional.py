"""ETags from version columns: ``If-None-Match`` -> 304, ``If-Match`` -> 428 / 412."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from flask import g, request
from werkzeug.http import quote_etag

from mars_server.http.problems import PreconditionFailed, PreconditionRequired

if TYPE_CHECKING:
    from flask import Response


def etag_of(obj: Any) -> str:
    """A strong, opaque ETag for a :class:`~mars_server.db.Versioned` row."""
    material = f"{obj.__tablename__}:{obj.id}:{obj.version}".encode()
    return hashlib.sha256(material).hexdigest()[:24]


def send_etag(obj: Any) -> Any:
    """Mark ``obj`` as this response's resource: its ETag is sent, ``If-None-Match`` honoured.

    Returns ``obj`` so a view can ``return send_etag(thing)``.
    """
    g.etag_object = obj
    return obj


def require_if_match(obj: Any) -> None:
    """Refuse to change ``obj`` unless the client proves it has the current version.

    ``If-Match: *`` proves nothing: RFC 9110 lets it match any current version, so a client
    could overwrite a change it never saw. It is refused like a missing ``If-Match`` (428).
    """
    if_match = request.if_match
    if not if_match:
        raise PreconditionRequired(
            "Send If-Match with the ETag you last read, so no one's change is lost."
        )
    if if_match.star_tag:
        raise PreconditionRequired(
            "Send If-Match with the ETag you last read; '*' does not say which version you "
            "changed, so it could overwrite someone else's change."
        )
    if not if_match.contains(etag_of(obj)):
        raise PreconditionFailed(
            "The resource changed since you read it; fetch it again and retry."
        )


def apply_etag(response: Response) -> Response:
    """after_request: set the ETag and turn a matching conditional GET into 304."""
    obj = g.pop("etag_object", None)
    if obj is None or response.status_code >= 300:
        return response
    etag = etag_of(obj)
    response.headers["ETag"] = quote_etag(etag)
    if_none_match = request.if_none_match
    if request.method in ("GET", "HEAD") and (
        if_none_match.star_tag or if_none_match.contains_weak(etag)
    ):
        response.status_code = 304
        response.set_data(b"")
        for header in ("Content-Type", "Content-Length"):
            response.headers.pop(header, None)
    return response
