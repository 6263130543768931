"""MARS's Blueprint: flask-smorest's, plus ``requires`` for authorization that documents itself.

It also keeps flask-smorest's per-request work small: argument schemas are built once, at
decoration time, and response schemas dump through a compiled function (``serialize.py``).
"""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import flask_smorest
import marshmallow as ma
from webargs.flaskparser import FlaskParser

from mars_server.http.security import authorize, current_actor
from mars_server.http.serialize import fast_dump_schema

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")

#: The OpenAPI security schemes a MARS token satisfies (see ``http/spec.py``).
SECURITY_SCHEMES = ("oauth2", "personalAccessToken")


class ArgumentsParser(FlaskParser):
    """webargs' Flask parser, but an unknown query parameter is an error, not ignored:
    ``?visiblity=public`` must not quietly return the unfiltered list."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ArgumentsParser()

    def requires(
        self, *scopes: str, permission: str | None = None, optional: bool = False
    ) -> Callable[[F], F]:
        """Let only callers whose token has ``scopes`` (and who hold ``permission``) in.

        No token: 401 with ``WWW-Authenticate: Bearer``; a token without the scopes: 403
        ``insufficient_scope``. With ``optional=True`` a caller without a token gets in too,
        as anonymous (the service decides what anonymous may see); a token sent must still
        carry the scopes. The operation's OpenAPI ``security`` says the same.
        """

        def decorator(func: F) -> F:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not (optional and current_actor() is None):
                    authorize(scopes, permission)
                return func(*args, **kwargs)

            security: list[dict[str, list[str]]] = [{}] if optional else []
            security += [{scheme: list(scopes)} for scheme in SECURITY_SCHEMES]
            doc: dict[str, Any] = {"security": security}
            if permission:
                doc["x-mars-permission"] = permission
            return self.doc(**doc)(wrapper)

        return decorator

    def arguments(self, schema: Any, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``arguments``, with a schema class instantiated once, here.

        Given a class, webargs would build a new instance (deep-copying every field) on each
        request. The OpenAPI document is the same for the class and a plain instance.
        """
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        return super().arguments(schema, **kwargs)

    def response(self, status_code: Any, schema: Any = None, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``response``, dumping through a compiled copy of ``schema``.

        The body is exactly what ``schema.dump`` gives (see ``serialize.compile_dump``); the
        OpenAPI document is unchanged. A ``schema`` given as a reference or dict, for views
        that return a ``Response``, is passed on as it is.
        """
        if isinstance(schema, ma.Schema) or (
            isinstance(schema, type) and issubclass(schema, ma.Schema)
        ):
            schema = fast_dump_schema(schema)
        return super().response(status_code, schema, **kwargs)
