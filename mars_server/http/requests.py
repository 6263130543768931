"""What happens to every request: its id, the JSON body rule, and the access log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from flask import g, request
from flask_smorest import abort
from werkzeug.exceptions import UnsupportedMediaType

from mars_server.http.problems import BadRequest
from mars_server.http.spec import API_PREFIX

if TYPE_CHECKING:
    from flask import Response

access_log = logging.getLogger("mars.access")

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's id is kept when it is short and plain; anything else is replaced.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
NUL_MESSAGE = "Must not contain NUL characters."


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _nul_pointers(document: object) -> list[str]:
    """JSON pointers of the strings holding NUL in ``document`` (iterative: no depth limit)."""
    found, stack = [], [(document, "")]
    while stack:
        value, pointer = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                found.append(pointer or "/")
        elif isinstance(value, dict):
            stack.extend((v, f"{pointer}/{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{pointer}/{i}") for i, v in enumerate(value))
    return sorted(found)


def _reject_nul_characters() -> None:
    """NUL cannot be stored (PostgreSQL refuses it in text) and is never meaningful text."""
    if "\x00" in request.path:
        raise BadRequest("The URL contains a NUL character.")
    messages: dict[str, dict[str, list[str]]] = {}
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            messages.setdefault("query", {})[name.replace("\x00", "")] = [NUL_MESSAGE]
    data = request.get_data(cache=True)
    if b"\\u0000" in data.lower() and _is_json(request.mimetype):
        body = request.get_json(silent=True)
        for pointer in _nul_pointers(body):
            messages.setdefault("json", {})[pointer.lstrip("/") or "/"] = [NUL_MESSAGE]
    if messages:
        abort(422, messages=messages)


#: what a request keeps on ``g``; cleared at its start, since an outer app context (a test,
#: a CLI command) can outlive one request and carry ``g`` into the next.
REQUEST_STATE = ("mars_actor", "link_next", "etag_object", "idempotency_claim", "mars_committed")


def start_request() -> None:
    for name in REQUEST_STATE:
        g.pop(name, None)
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
    if request.path.startswith(API_PREFIX):
        _reject_nul_characters()


def add_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def log_request(response: Response) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return  # building the record's fields costs more than the check
    started = g.get("request_started")
    method, path, status = request.method, request.path, response.status_code
    access_log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "remote_addr": request.remote_addr,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        },
    )
