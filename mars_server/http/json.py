"""The app's JSON provider: response bodies encoded by orjson, request bodies parsed strictly.

:class:`MarsJSONProvider` encodes response bodies with orjson when that gives the same
bytes Flask's own provider would, and hands everything else to Flask's provider. It parses
request bodies by MARS's rules (``requests.load_json_body``). What goes into a body is a
schema's dump, compiled by :mod:`mars_server.http.serialize`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.json.provider import DefaultJSONProvider

from mars_server.http.requests import load_json_body

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; Flask's provider still works
    orjson = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from flask import Flask
    from flask.json.provider import JSONProvider
    from werkzeug.sansio.response import Response


class MarsJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with response bodies encoded by orjson.

    orjson is used only where its bytes are Flask's: compact output (not debug mode), and
    printable ASCII output while :attr:`ensure_ascii` is on (a body with other characters
    or DEL is encoded by Flask, which escapes them). Dates and dataclasses still go through
    :attr:`default` (Flask's RFC 822 dates, ``dataclasses.asdict``). What orjson refuses
    (integers beyond 64 bits, non-string keys, lone surrogates, unknown types) is encoded
    by Flask, which answers or raises as before. Two differences remain, in floats only:
    orjson writes ``1e-05`` as ``0.00001`` (the same number), and NaN and infinities as
    ``null`` (Python's ``NaN`` is not JSON). :meth:`dumps` is Flask's, unchanged.

    :meth:`loads` (what ``request.get_json`` calls) is strict RFC 8259: see
    :func:`~mars_server.http.requests.load_json_body`.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return load_json_body(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if orjson is None or self.compact is False or (self.compact is None and self._app.debug):
            return super().response(obj)
        option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
        if self.sort_keys:
            option |= orjson.OPT_SORT_KEYS
        try:
            body = orjson.dumps(obj, default=self.default, option=option)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return super().response(obj)
        if self.ensure_ascii and (not body.isascii() or b"\x7f" in body):
            return super().response(obj)  # json escapes non-ASCII and DEL; orjson does not
        response_class: Any = self._app.response_class
        return response_class(body + b"\n", mimetype=self.mimetype)


def json_provider(app: Flask) -> JSONProvider:
    """The JSON provider for ``app``: :class:`MarsJSONProvider` (Flask's encoder without orjson)."""
    return MarsJSONProvider(app)
