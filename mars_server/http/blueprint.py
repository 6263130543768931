"""MARS's Blueprint: flask-smorest's, plus ``requires`` for authorization that documents itself.

It also keeps flask-smorest's per-request work small: argument schemas are built once, at
decoration time, and response schemas dump through a compiled function (``serialize.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from email.utils import format_datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import flask_smorest
import marshmallow as ma
from flask import after_this_request, request
from marshmallow.utils import missing
from webargs.flaskparser import FlaskParser, is_json_request

from mars_server.http import caching
from mars_server.http.pagination import select_fields
from mars_server.http.ratelimit import operation_limit, parse_rate
from mars_server.http.security import admit
from mars_server.http.serialize import fast_dump_schema
from mars_server.http.spec import ANY_CREDENTIAL

if TYPE_CHECKING:
    from collections.abc import Callable

    import flask

F = TypeVar("F", bound="Callable[..., Any]")


class ArgumentsParser(FlaskParser):
    """webargs' Flask parser, but an unknown query parameter is an error, not ignored:
    ``?visiblity=public`` must not quietly return the unfiltered list; and a JSON body is
    read by ``request.get_json``, with MARS's rules (``requests.load_json_body``), once."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def _raw_load_json(self, req: flask.Request) -> Any:
        # webargs would parse the bytes again with a plain json.loads; an empty body is
        # "no body" for webargs (missing), where get_json would call it malformed.
        if not is_json_request(req) or not req.get_data(cache=True):
            return missing
        return req.get_json()


def deprecation_headers(since: dt.date, sunset: dt.date | None, link: str | None) -> dict[str, str]:
    """``Deprecation: @<since>`` (RFC 9745), ``Sunset`` (RFC 8594) and the ``Link`` to the
    migration note."""
    since_at = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    headers = {"Deprecation": f"@{int(since_at.timestamp())}"}
    if sunset is not None:
        sunset_at = dt.datetime.combine(sunset, dt.time(), tzinfo=dt.UTC)
        headers["Sunset"] = format_datetime(sunset_at, usegmt=True)
    if link is not None:
        headers["Link"] = f'<{link}>; rel="deprecation"; type="text/html"'
    return headers


def deprecation_note(since: dt.date, sunset: dt.date | None, link: str | None) -> str:
    return (
        f"Deprecated since {since.isoformat()}"
        + (f"; removed on {sunset.isoformat()}" if sunset else "")
        + (f" ([how to move on]({link}))" if link else "")
        + "."
    )


def deprecation_extensions(since: dt.date, sunset: dt.date | None) -> dict[str, Any]:
    documented: dict[str, Any] = {"deprecated": True, "x-mars-deprecated-since": since.isoformat()}
    if sunset is not None:
        documented["x-mars-sunset"] = sunset.isoformat()
    return documented


def send_deprecation(headers: dict[str, str]) -> None:
    """Send ``headers`` (:func:`deprecation_headers`) with this request's answer."""

    @after_this_request
    def add_headers(response: flask.Response) -> flask.Response:
        for name, value in headers.items():
            if name == "Link" and response.headers.get("Link"):
                if value not in response.headers["Link"]:
                    response.headers["Link"] += ", " + value
            else:
                response.headers[name] = value
        return response


def deprecated_field(
    field: ma.fields.Field,
    *,
    since: dt.date,
    sunset: dt.date | None = None,
    link: str | None = None,
) -> ma.fields.Field:
    """Mark a field of a request (a query parameter, a body's field) or of an answer as
    deprecated since ``since``, to be removed on ``sunset``: the OpenAPI document marks it
    ``deprecated``; a request that sends it is answered with ``Deprecation``, ``Sunset`` and
    the ``Link`` to ``link``, so the SDK warns its caller (docs/http.md#versions)."""
    note = deprecation_note(since, sunset, link)
    described = field.metadata.get("description")
    field.metadata = {
        **field.metadata,
        **deprecation_extensions(since, sunset),
        "description": f"{described} {note}" if described else note,
    }
    field.mars_deprecation = deprecation_headers(since, sunset, link)  # type: ignore[attr-defined]
    return field


def _deprecated_keys(schema: ma.Schema) -> dict[str, dict[str, str]]:
    """The wire names of ``schema``'s deprecated fields, and the headers each calls for."""
    return {
        field.data_key or name: field.mars_deprecation
        for name, field in schema.fields.items()
        if hasattr(field, "mars_deprecation")
    }


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, mounted under ``/api/v<api_version>`` + ``url_prefix``.

    :param api_version: ``2`` serves the blueprint's operations under ``/api/v2``: how a
        plugin offers an operation it must break beside the ``/api/v1`` one it keeps
        (docs/http.md#versions-and-deprecation).
    """

    ARGUMENTS_PARSER = ArgumentsParser()

    def __init__(self, *args: Any, api_version: int = 1, **kwargs: Any) -> None:
        if not isinstance(api_version, int) or api_version < 1:
            raise ValueError(f"api_version must be a positive integer, not {api_version!r}")
        super().__init__(*args, **kwargs)
        self.api_version = api_version

    def requires(
        self, *scopes: str, permission: str | None = None, optional: bool = False
    ) -> Callable[[F], F]:
        """Let only callers whose token has ``scopes`` (and who hold ``permission``) in.

        No token: 401 with ``WWW-Authenticate: Bearer``; a token without the scopes: 403
        ``insufficient_scope``. With ``optional=True`` a caller without a token gets in too,
        as anonymous (the service decides what anonymous may see); a token sent must still
        carry the scopes. The operation's OpenAPI ``security`` says the same, naming every
        security scheme the plugins contribute (``mars_security_schemes``), each with
        ``scopes``: whichever plugin accepts a credential, it is accepted here.
        """

        def decorator(func: F) -> F:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                admit(scopes, permission, optional=optional)
                return func(*args, **kwargs)

            security: list[dict[str, list[str]]] = [{}] if optional else []
            # The schemes are known once the app is built: MarsSpecPlugin names them.
            security.append({ANY_CREDENTIAL: list(scopes)})
            doc: dict[str, Any] = {"security": security}
            if permission:
                doc["x-mars-permission"] = permission
            return self.doc(**doc)(wrapper)

        return decorator

    def rate_limit(self, rate: str, *, name: str | None = None) -> Callable[[F], F]:
        """Give the operation a rate-limit policy of its own: at most ``rate`` (``10/minute``,
        ``100/hour``...) per caller, counted on top of the caller's ``default`` (or
        ``anonymous``) policy; a request passes only while both have room.

        The policy is named after the operation's ``operationId`` (or ``name``), which is
        what the ``RateLimit`` header fields and ``mars ratelimit show`` call it; operations
        given one ``name`` share one allowance. The OpenAPI document says it as
        ``x-mars-rate-limit``. A malformed ``rate`` raises ``ValueError`` here.
        """
        mark = operation_limit(rate, name)  # a bad rate or name fails here, at import
        quota, window = parse_rate(rate)
        documented: dict[str, Any] = {"quota": quota, "window": window}
        if name is not None:
            documented["policy"] = name

        def decorator(func: F) -> F:
            return self.doc(**{"x-mars-rate-limit": documented})(mark(func))

        return decorator

    def deprecated(
        self, *, since: dt.date, sunset: dt.date | None = None, link: str | None = None
    ) -> Callable[[F], F]:
        """Mark the operation deprecated since ``since`` (a date), to be removed on ``sunset``:
        every answer then carries ``Deprecation: @<since>`` (RFC 9745), ``Sunset: <date>``
        (RFC 8594) and, with ``link`` (the migration note), ``Link: <link>;
        rel="deprecation"``; the OpenAPI document marks it ``deprecated`` and says when it
        goes (``x-mars-sunset``), and the SDK warns whoever calls it (docs/http.md#versions).
        """
        headers = deprecation_headers(since, sunset, link)
        note = deprecation_note(since, sunset, link)
        documented = deprecation_extensions(since, sunset)

        def decorator(func: F) -> F:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                send_deprecation(headers)
                return func(*args, **kwargs)

            existing = (func.__doc__ or "").strip()
            wrapper.__doc__ = f"{existing}\n\n{note}" if existing else note
            return self.doc(**documented)(wrapper)

        return decorator

    def cache_control(
        self, *, public_max_age: int | None = None, no_store: bool = False
    ) -> Callable[[F], F]:
        """Say how the operation's answers may be cached, beyond MARS's rules
        (:mod:`mars_server.http.caching`).

        ``public_max_age=N``: an anonymous answer is ``public, max-age=N`` (a list of public
        resources, the same for every anonymous caller); answers to callers with a token stay
        ``private, no-store``. ``no_store=True``: no answer is ever kept (``no-store``).
        """
        return caching.with_policy(
            caching.CachePolicy(public_max_age=public_max_age, no_store=no_store)
        )

    def arguments(self, schema: Any, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``arguments``, with a schema class instantiated once, here.

        A request that uses a field marked with :func:`deprecated_field` is answered with the
        field's ``Deprecation``, ``Sunset`` and ``Link`` headers.

        Given a class, webargs would build a new instance (deep-copying every field) on each
        request. The OpenAPI document is the same for the class and a plain instance.
        """
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        parse = super().arguments(schema, **kwargs)
        deprecated = _deprecated_keys(schema) if isinstance(schema, ma.Schema) else {}
        if not deprecated:
            return parse
        in_query = kwargs.get("location", "json") in ("query", "querystring")

        def decorator(func: F) -> F:
            parsed = parse(func)

            @wraps(parsed)
            def wrapper(*args: Any, **kw: Any) -> Any:
                sent = request.args if in_query else request.get_json(silent=True)
                if isinstance(sent, Mapping):
                    for key, headers in deprecated.items():
                        if key in sent:
                            send_deprecation(headers)
                return parsed(*args, **kw)

            return wrapper  # type: ignore[return-value]

        return decorator

    def response(self, status_code: Any, schema: Any = None, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``response``, dumping through a compiled copy of ``schema``.

        The body is exactly what ``schema.dump`` gives (see ``serialize.compile_dump``); the
        OpenAPI document is unchanged. A ``schema`` given as a reference or dict, for views
        that return a ``Response``, is passed on as it is.
        """
        secret = False
        if isinstance(schema, ma.Schema) or (
            isinstance(schema, type) and issubclass(schema, ma.Schema)
        ):
            secret = caching.carries_secret(schema)
            fields = schema._declared_fields if isinstance(schema, type) else schema.fields
            # A page ({"items", "next_cursor"}) answers ``?fields=`` where its list offers it.
            page = {"items", "next_cursor"} <= set(fields)
            schema = fast_dump_schema(schema, then=select_fields if page else None)
        decorator = super().response(status_code, schema, **kwargs)
        if not secret:
            return decorator
        # An answer carrying a fresh secret is never kept by any cache (``no-store``).
        never_stored = caching.with_policy(caching.SECRET_POLICY)
        return lambda func: decorator(never_stored(func))
