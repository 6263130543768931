"""What happens to every request: its id, the JSON body rule, and the access log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from flask import g, request
from werkzeug.exceptions import UnsupportedMediaType

from mars_server.http.spec import API_PREFIX

if TYPE_CHECKING:
    from flask import Response

access_log = logging.getLogger("mars.access")

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's id is kept when it is short and plain; anything else is replaced.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def start_request() -> None:
    g.request_started = time.perf_counter()
    client_id = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = client_id if _WELL_FORMED_ID.match(client_id) else uuid.uuid4().hex
    if (
        request.method in _BODY_METHODS
        and request.path.startswith(API_PREFIX)
        and (request.content_length or request.headers.get("Transfer-Encoding"))
        and not _is_json(request.mimetype)
    ):
        raise UnsupportedMediaType()


def add_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def log_request(response: Response) -> None:
    started = g.get("request_started")
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "remote_addr": request.remote_addr,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        },
    )
