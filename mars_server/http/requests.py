"""What happens to every request: its id, the JSON body rule, and the access log line."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from flask import g, request
from flask_smorest import abort
from werkzeug.exceptions import UnsupportedMediaType

from mars_server.http.limits import BodyLimitedRequest
from mars_server.http.problems import PROBLEM_TYPE_PREFIX, BadRequest
from mars_server.http.spec import is_api_path

if TYPE_CHECKING:
    from flask import Response

access_log = logging.getLogger("mars.access")

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's id is kept when it is short and plain; anything else is replaced.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
#: DELETE too: deleting an account carries the password that confirms it
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NUL_MESSAGE = "Must not contain NUL characters."


#: Python turns at most this many digits into an int (``sys.get_int_max_str_digits``); no
#: field needs a fraction of them. Fixed here, so the answer is the same on every interpreter.
MAX_INTEGER_DIGITS = 4300
#: a ``\\uD800``-``\\uDFFF`` escape, the only way a surrogate gets into a UTF-8 body
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONBodyError(ValueError):
    """Why a request body is not JSON MARS accepts; its message is the problem's detail."""


class MalformedJSON(BadRequest):
    type_ = PROBLEM_TYPE_PREFIX + "malformed-json"
    title = "The request body is not valid JSON."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONBodyError(f"The JSON object has the key {_quoted(key)} twice.")
            seen.add(key)
    return document


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise JSONBodyError(f"A JSON integer has more than {MAX_INTEGER_DIGITS} digits.")
    return int(digits)


def _constant(name: str) -> float:
    raise JSONBodyError(f"{name} is not a JSON value.")


def _quoted(text: str, limit: int = 40) -> str:
    """``text`` as a short JSON string, lone surrogates escaped (a detail must be text)."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "...")


def _pointer(path: list[str | int]) -> str:
    """RFC 6901 pointer of ``path``, surrogates escaped as ``\\udxxx`` so it is text."""
    tokens = (str(t).replace("~", "~0").replace("/", "~1") for t in path)
    pointer = "".join("/" + token for token in tokens) or "/"
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", pointer)


def _surrogate_pointers(document: object) -> list[str]:
    """Pointers to the strings, keys included, that hold a lone surrogate (iterative)."""
    found: list[str] = []
    stack: list[tuple[object, list[str | int]]] = [(document, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                found.append(_pointer(path))
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    found.append(_pointer([*path, key]))
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, i]) for i, item in enumerate(value))
    return sorted(found)


def load_json_body(data: str | bytes) -> Any:
    """Parse a request body by RFC 8259, refusing what Python's ``json`` lets through.

    ``json.loads`` takes ``NaN`` and ``Infinity``, lets the last of two equal keys win
    silently (``{"visibility": "private", "visibility": "public"}`` is public), raises a bare
    ``ValueError`` past 4,300 digits, and turns a lone surrogate escape (``"\\ud800"``) into
    a str that UTF-8, PostgreSQL and hashlib all refuse. Each is a :class:`JSONBodyError`
    here. This is the app's ``json.loads`` (``http.json.MarsJSONProvider``), so Flask's
    ``request.get_json``, webargs (``blueprint.ArgumentsParser``) and the idempotency
    fingerprint all read a body by the same rules.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode()  # RFC 8259: JSON between systems is UTF-8
        except UnicodeDecodeError as exc:
            raise JSONBodyError(f"A JSON body must be UTF-8 text (byte {exc.start}).") from exc
    else:
        text = data
    try:
        document = json.loads(
            text, object_pairs_hook=_unique_keys, parse_int=_integer, parse_constant=_constant
        )
    except json.JSONDecodeError as exc:
        raise JSONBodyError(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from exc
    except RecursionError as exc:
        raise JSONBodyError("The JSON body is nested too deeply.") from exc
    if _SURROGATE_ESCAPE.search(text) and (pointers := _surrogate_pointers(document)):
        raise JSONBodyError(
            "A JSON string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not "
            f"a character, at {', '.join(pointers[:5])}."
        )
    return document


class MarsRequest(BodyLimitedRequest):
    """Flask's request; a body that :func:`load_json_body` refuses is a 400 problem
    saying why (Flask's own answer is a bare 400)."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if isinstance(e, JSONBodyError):
            raise MalformedJSON(str(e)) from e
        return super().on_json_loading_failed(e)


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


def _parse_json_body() -> None:
    """Parse a JSON body now: a malformed one is refused before any view, and before its
    ``Idempotency-Key`` is claimed, the same way on every endpoint (see :class:`MarsRequest`).
    The parsed body is cached for webargs and the idempotency fingerprint."""
    if (
        request.method in _BODY_METHODS
        and _is_json(request.mimetype)
        and request.get_data(cache=True)
    ):
        request.get_json()


def _reject_nul_characters() -> None:
    """NUL cannot be stored (PostgreSQL refuses it in text) and is never meaningful text."""
    if "\x00" in request.path:
        raise BadRequest("The URL contains a NUL character.")
    messages: dict[str, dict[str, list[str]]] = {}
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            messages.setdefault("query", {})[name.replace("\x00", "")] = [NUL_MESSAGE]
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    data = request.get_data(cache=True) if has_body else b""
    if b"\\u0000" in data.lower() and _is_json(request.mimetype):
        body = request.get_json(silent=True)
        for pointer in _nul_pointers(body):
            messages.setdefault("json", {})[pointer.lstrip("/") or "/"] = [NUL_MESSAGE]
    if messages:
        abort(422, messages=messages)


#: what a request keeps on ``g``; cleared at its start, since an outer app context (a test,
#: a CLI command) can outlive one request and carry ``g`` into the next.
REQUEST_STATE = (
    "mars_actor",
    "mars_actor_refused",
    "link_next",
    "etag_object",
    "idempotency_claim",
    "mars_committed",
    "mars_retry_may_succeed",
)


def start_request() -> None:
    for name in REQUEST_STATE:
        g.pop(name, None)
    g.request_started = time.perf_counter()
    client_id = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = client_id if _WELL_FORMED_ID.match(client_id) else uuid.uuid4().hex
    if (
        request.method in _BODY_METHODS
        and is_api_path(request.path)
        and (request.content_length or request.headers.get("Transfer-Encoding"))
        and not _is_json(request.mimetype)
    ):
        raise UnsupportedMediaType()
    if is_api_path(request.path):
        _parse_json_body()
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
