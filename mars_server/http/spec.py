"""The OpenAPI side of the HTTP layer: MARS's flask-smorest ``Api`` and spec conventions.

Every operation is checked as it is registered: it must have a unique ``operationId``, a
tag, a summary and a description, and it gets the problem responses and headers the
conventions promise (documented once, under ``components``), so the SDK generator can rely on
them.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask
import flask_swagger_ui
import marshmallow as ma
from apispec import APISpec, BasePlugin
from flask import Blueprint as FlaskBlueprint
from flask import send_from_directory
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from mars_server.http import caching
from mars_server.http.problems import PROBLEM_MEDIA_TYPE, ProblemSchema

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from werkzeug import Response

    from mars_server.hookspecs import SecurityScheme

API_PREFIX = "/api/v1"
#: ``/api/v1``, ``/api/v2``...: the paths of the API's versions (docs/http.md#versions).
_API_PATH = re.compile(r"/api/v[1-9][0-9]*(/|$)")


def api_root(version: int) -> str:
    """Where version ``version`` of the API is served: ``/api/v2``."""
    return f"/api/v{version}"


def is_api_path(path: str) -> bool:
    """Whether ``path`` is an operation of some version of the API (``/api/v1/...``)."""
    return _API_PATH.match(path) is not None


#: What ``Blueprint.requires`` writes in an operation's ``security`` for "a token with these
#: scopes", at import, long before the plugins are known: :class:`MarsSpecPlugin` replaces it
#: with one requirement per security scheme the plugins contribute (``mars_security_schemes``).
ANY_CREDENTIAL = "x-mars-any-credential"
#: how long any cache may keep the OpenAPI document and the docs page (seconds): they
#: change only with a deploy, and a client revalidates them cheaply with their ETag.
DOCUMENT_MAX_AGE = 300
DOCUMENT_POLICY = caching.CachePolicy(public_max_age=DOCUMENT_MAX_AGE, everyone=True)
DOCS_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
MUTATING = ("post", "put", "patch", "delete")
#: The IETF rate-limit fields (draft-ietf-httpapi-ratelimit-headers), on every operation's
#: answers: see mars_server.http.ratelimit and docs/http.md.
RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": 'The rate-limit policies the request counted in, e.g. `"default";q=600;'
    "w=60`: at most `q` requests per window of `w` seconds (a structured-field list).",
    "RateLimit": 'Where you stand in each policy, e.g. `"default";r=599;t=42`: `r` requests '
    "remain, and the window ends in `t` seconds (a structured-field list).",
}
_RATE_LIMIT_REFS = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}


class SpecError(Exception):
    """An operation breaks the API conventions; start-up stops with this message."""


class MarsSpecPlugin(BasePlugin):
    """Checks each operation and adds the shared problem responses and headers, and the
    security schemes the plugins contribute (``mars_security_schemes``)."""

    def __init__(
        self,
        scopes: dict[str, str] | None = None,
        security_schemes: Sequence[SecurityScheme] = (),
    ) -> None:
        #: every declared OAuth scope and its description
        self.scopes = scopes or {}
        #: the kinds of credential the plugins accept: what ``requires`` operations list
        self.security_schemes = list(security_schemes)

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec
        self.operation_ids: dict[str, str] = {}
        components = spec.components
        for scheme in self.security_schemes:
            components.security_scheme(scheme.name, dict(scheme.definition))
        components.header(
            "X-Request-ID",
            {
                "description": "The request's id: yours when well-formed, else one MARS made.",
                "schema": {"type": "string"},
            },
        )
        components.parameter(
            "IDEMPOTENCY_KEY",
            "header",
            {
                "name": "Idempotency-Key",
                "required": False,
                "description": "Send the same key to retry safely: the first response is "
                "replayed for 24 hours. The same key with another body is 422.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": r"^[\x21-\x7e]+$",
                },
            },
        )
        components.parameter(
            "IF_MATCH",
            "header",
            {
                "name": "If-Match",
                "required": True,
                "description": "The ETag you last read. Missing: 428; stale: 412.",
                "schema": {"type": "string"},
            },
        )
        components.parameter(
            "IF_NONE_MATCH",
            "header",
            {
                "name": "If-None-Match",
                "required": False,
                "description": "An ETag you hold: 304 Not Modified while it is current.",
                "schema": {"type": "string"},
            },
        )
        components.header(
            "ETag",
            {
                "description": "The version of the resource, for If-Match and If-None-Match.",
                "schema": {"type": "string"},
            },
        )
        components.header(
            "Link",
            {
                "description": '`<url>; rel="next"` while there are more pages.',
                "schema": {"type": "string"},
            },
        )
        components.header(
            "Location",
            {"description": "The URL of the created resource.", "schema": {"type": "string"}},
        )
        components.header(
            "Retry-After",
            {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 0},
            },
        )
        for name, description in RATE_LIMIT_HEADERS.items():
            components.header(name, {"description": description, "schema": {"type": "string"}})

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            where = f"{method.upper()} {path}"
            self._check(where, operation)
            if "security" in operation:
                operation["security"] = self._security(where, operation["security"])
            else:
                # Said, not left out: an anonymous operation needs no credentials at all.
                operation["security"] = []
            responses = operation.setdefault("responses", {})
            for status in self._problem_statuses(method, path or "", operation):
                responses.setdefault(str(status), http.HTTPStatus(status).name)
            parameters = operation.setdefault("parameters", [])
            headers = ["X-Request-ID"]
            single = "{" in (path or "")
            if method == "post":
                parameters.append("IDEMPOTENCY_KEY")
            if self._conditional(method, operation):
                parameters.append("IF_MATCH")
            if method == "get" and single:
                parameters.append("IF_NONE_MATCH")
                responses["304"] = {
                    "description": "Not Modified: your copy is current.",
                    "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
                }
            if (method == "get" and single) or method in ("post", "patch"):
                headers.append("ETag")
            if method == "post":
                headers.append("Location")
            if method == "get" and any(
                isinstance(p, dict) and p.get("name") == "cursor" for p in parameters
            ):
                headers.append("Link")
            for code, response in responses.items():
                if isinstance(response, dict) and str(code).startswith("2"):
                    response.setdefault("headers", {}).update(
                        {
                            name: {"$ref": f"#/components/headers/{name}"}
                            for name in self._answered(str(code), response, headers, operation)
                        }
                    )
                if isinstance(response, dict):  # the problem responses have them already
                    response.setdefault("headers", {}).update(_RATE_LIMIT_REFS)

    @staticmethod
    def _answered(
        code: str, response: dict[str, Any], headers: list[str], operation: dict[str, Any]
    ) -> list[str]:
        """The headers a success of ``code`` carries: a 204 has no ETag nor Location; a 202
        no ETag, and a Location only when it is a long-running operation's (its answer, or a
        view that says ``x-mars-long-running``)."""
        if code == "204":
            return [h for h in headers if h not in ("ETag", "Location")]
        if code == "202":
            content = response.get("content", {}).get("application/json", {})
            ref = str(content.get("schema", {}).get("$ref", ""))
            keep = ref.endswith("/LongRunningOperation") or operation.get("x-mars-long-running")
            return [h for h in headers if h != "ETag" and (h != "Location" or keep)]
        return headers

    def _check(self, where: str, operation: dict[str, Any]) -> None:
        operation_id = operation.get("operationId")
        if not operation_id:
            raise SpecError(f"{where}: no operationId (add @blp.doc(operationId=...))")
        if operation_id in self.operation_ids:
            raise SpecError(
                f"{where}: operationId {operation_id!r} is used by "
                f"{self.operation_ids[operation_id]} too"
            )
        self.operation_ids[operation_id] = where
        if not operation.get("summary"):
            raise SpecError(f"{where}: no summary (give the view method a docstring)")
        if not operation.get("description"):
            raise SpecError(
                f"{where}: no description (after the docstring's first line, a paragraph "
                "saying who may call it and what a client must know)"
            )
        if not operation.get("tags"):
            raise SpecError(f"{where}: no tag")
        for requirement in operation.get("security", []):
            undeclared = {s for scopes in requirement.values() for s in scopes} - set(self.scopes)
            if undeclared:
                raise SpecError(
                    f"{where}: scope(s) {sorted(undeclared)} are not declared by "
                    "any plugin (mars_scopes)"
                )

    def _security(
        self, where: str, requirements: list[dict[str, list[str]]]
    ) -> list[dict[str, list[str]]]:
        """The operation's security requirements, where ``requires`` wrote
        :data:`ANY_CREDENTIAL` replaced by one requirement per contributed scheme."""
        expanded: list[dict[str, list[str]]] = []
        for requirement in requirements:
            if ANY_CREDENTIAL not in requirement:
                expanded.append(requirement)
                continue
            if not self.security_schemes:
                raise SpecError(
                    f"{where}: requires a credential, but no plugin contributes a security "
                    "scheme (mars_security_schemes)"
                )
            scopes = requirement[ANY_CREDENTIAL]
            expanded += [
                {scheme.name: list(scopes) if _has_scopes(scheme) else []}
                for scheme in self.security_schemes
            ]
        return expanded

    @staticmethod
    def _conditional(method: str, operation: dict[str, Any]) -> bool:
        """PATCH and DELETE need If-Match, unless the view says it changes no versioned
        resource (``@blp.doc(**{"x-mars-if-match": False})``)."""
        return method in ("patch", "delete") and operation.get("x-mars-if-match", True)

    @staticmethod
    def _problem_statuses(method: str, path: str, operation: dict[str, Any]) -> list[int]:
        # Any request can be malformed (400), carry an unknown query parameter (422) or go
        # over its rate limit (429).
        statuses = [400, 422, 429, 500, 503]
        if operation.get("security"):
            statuses += [401, 403]
        if "{" in path:
            statuses.append(404)
        if "requestBody" in operation:
            statuses += [400, 413, 415, 422]
        if operation.get("parameters"):
            statuses.append(422)
        if method in ("post", "patch"):
            statuses.append(409)
        if MarsSpecPlugin._conditional(method, operation):
            statuses += [412, 428]
        return sorted(set(statuses))


def _has_scopes(scheme: SecurityScheme) -> bool:
    """Whether a requirement of ``scheme`` lists scopes: OpenAPI tools know scopes only for
    OAuth 2 and OpenID Connect. Other schemes (a bearer token) are listed with ``[]``, and say
    in their description that the operation's OAuth 2 scopes apply to them too."""
    return scheme.definition.get("type") in ("oauth2", "openIdConnect")


def no_nul_pattern(
    converter: Any, field: ma.fields.Field, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Say what ``requests.py`` enforces: no string accepts a NUL character."""
    types = ret.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    documented = {"pattern", "enum", "format"} & set(ret)
    if is_string and isinstance(field, ma.fields.String) and not documented:
        return {"pattern": "^[^\\u0000]*$"}
    return {}


def nullable_enum(
    converter: Any, field: ma.fields.Field, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Write a nullable enum as ``anyOf: [the enum, null]``, not as ``type: [string, null]``
    with ``null`` among the values: generators make one enum type of the first form, and three
    copies of it of the second."""
    enum, types = ret.get("enum"), ret.get("type")
    if not enum or None not in enum or not isinstance(types, list) or "null" not in types:
        return {}
    values = [value for value in enum if value is not None]
    kinds = [kind for kind in types if kind != "null"]
    del ret["enum"], ret["type"]
    kind = kinds[0] if len(kinds) == 1 else kinds
    return {"anyOf": [{"type": kind, "enum": values}, {"type": "null"}]}


def _refs(node: Any) -> set[str]:
    """The names of the component schemas ``node`` refers to, at any depth (not through
    the components themselves)."""
    if isinstance(node, dict):
        found = {str(node["$ref"]).rsplit("/", 1)[-1]} if "$ref" in node else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def read_and_write_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Give requests and answers schemas of their own, where one marshmallow schema serves
    both: generated clients then see a response's read-only fields as always there, and never
    offer them in a request.

    - A schema sent in a request body and also answered splits in two: ``<Name>Input`` for
      the request, without its read-only properties, and ``<Name>`` for the answers, without
      its write-only ones. A schema only ever sent loses its read-only properties in place.
    - In what MARS answers, a read-only property and one with a default are ``required``:
      MARS dumps every field of what it returns.
    """
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    bodies: list[dict[str, Any]] = []
    answered: set[str] = set()
    for item in [*document.get("paths", {}).values(), *document.get("webhooks", {}).values()]:
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if media and "$ref" in media.get("schema", {}):
                bodies.append(media["schema"])
            answered |= _refs(operation.get("responses", {}))
    answered |= _refs(document.get("components", {}).get("responses", {}))
    # What answered schemas nest is answered too; what webhooks send is read by the receiver.
    answered |= {ref for item in document.get("webhooks", {}).values() for ref in _refs(item)}
    pending = set(answered)
    while pending:
        nested = _refs(schemas.get(pending.pop(), {})) - answered
        answered |= nested
        pending |= nested
    for body in bodies:
        name = str(body["$ref"]).rsplit("/", 1)[-1]
        schema = schemas[name]
        properties = schema.get("properties", {})
        read_only = {key for key, prop in properties.items() if prop.get("readOnly")}
        if not read_only:
            continue
        written = {
            **schema,
            "properties": {k: v for k, v in properties.items() if k not in read_only},
        }
        if "required" in schema:
            written["required"] = [k for k in schema["required"] if k not in read_only]
        if name in answered:
            name += "Input"
            body["$ref"] = f"#/components/schemas/{name}"
        schemas[name] = written
    for name in answered & set(schemas):
        schema = schemas[name]
        properties = {
            key: prop
            for key, prop in schema.get("properties", {}).items()
            if not prop.get("writeOnly")
        }
        if not properties:
            continue
        schema["properties"] = properties
        always = [
            key
            for key, prop in properties.items()
            if key in schema.get("required", ()) or prop.get("readOnly") or "default" in prop
        ]
        if always:
            schema["required"] = always
    _partial_items(document)
    return document


def _partial_items(document: dict[str, Any]) -> None:
    """A list that offers ``?fields=`` answers items with only the fields asked for: its page
    lists ``Partial<Name>``, in which only ``id`` is required."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for item in document.get("paths", {}).values():
        operation = item.get("get")
        if not isinstance(operation, dict):
            continue
        names = {p.get("name") for p in operation.get("parameters", []) if isinstance(p, dict)}
        media = operation.get("responses", {}).get("200", {}).get("content", {})
        page_ref = media.get("application/json", {}).get("schema", {}).get("$ref", "")
        if "fields" not in names or not page_ref:
            continue
        page = schemas[page_ref.rsplit("/", 1)[-1]]
        items = page["properties"]["items"]["items"]
        full = str(items["$ref"]).rsplit("/", 1)[-1]
        partial = f"Partial{full}"
        if partial not in schemas:
            schema = copy.deepcopy(schemas[full])
            schema["required"] = [k for k in ("id",) if k in schema.get("properties", {})]
            schema["description"] = (
                f"{schema.get('description') or full}: the fields asked for with `fields` "
                "(every field without it); `id` always."
            )
            schema["x-mars-partial-of"] = full
            schemas[partial] = schema
        items["$ref"] = f"#/components/schemas/{partial}"


class MarsAPISpec(APISpec):
    """The document as flask-smorest builds it, finished by :func:`read_and_write_schemas`."""

    def to_dict(self) -> dict[str, Any]:
        return read_and_write_schemas(copy.deepcopy(super().to_dict()))


class MarsApi(Api):
    """flask-smorest's Api, with problem+json errors and offline interactive docs."""

    def _init_spec(self, **kwargs: Any) -> None:
        super()._init_spec(**kwargs)
        self.spec.__class__ = MarsAPISpec  # flask-smorest makes a plain APISpec
        self.ma_plugin.converter.add_attribute_function(no_nul_pattern)
        self.ma_plugin.converter.add_attribute_function(nullable_enum)

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "DEFAULT_ERROR"

    def _register_error_handlers(self) -> None:
        """MARS registers its own problem handlers (see ``register_problem_handlers``)."""

    def _register_etag_headers(self) -> None:
        """MARS documents its own ETag headers and parameters (see ``MarsSpecPlugin``)."""

    def _register_pagination_header(self) -> None:
        """MARS paginates with cursors and ``Link``, not flask-smorest's header."""

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                response["headers"] = dict(_RATE_LIMIT_REFS)
            if status == http.HTTPStatus.TOO_MANY_REQUESTS:
                response["headers"]["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
            prepare_response(response, self.spec, PROBLEM_MEDIA_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {
            "description": "A problem (RFC 9457).",
            "schema": self.ERROR_SCHEMA,
            "headers": dict(_RATE_LIMIT_REFS),
        }
        prepare_response(response, self.spec, PROBLEM_MEDIA_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def _openapi_json(self) -> Response:
        """The OpenAPI document, built on its first request only: it changes with a deploy
        (the plugins, the settings), never between requests."""
        return self._document(
            "openapi.json",
            "application/json",
            lambda: flask.json.dumps(self.spec.to_dict(), indent=2, sort_keys=False),
        )

    def _openapi_swagger_ui(self) -> Response:
        """The interactive docs page, rendered once."""
        return self._document(
            "docs.html",
            "text/html",
            super()._openapi_swagger_ui,
        )

    def _document(self, name: str, mimetype: str, build: Callable[[], str]) -> Response:
        """Serve a document the same for everyone, from memory, with an ETag (304 when the
        client's copy is current) and ``public, max-age`` (:data:`DOCUMENT_MAX_AGE`)."""
        # Keyed by the script root: links in the page depend on where MARS is mounted.
        key = (name, flask.request.script_root)
        found = self._documents.get(key)
        if found is None:
            body = build().encode()
            found = self._documents.setdefault(key, (body, hashlib.sha256(body).hexdigest()[:24]))
        body, etag = found
        caching.declare(DOCUMENT_POLICY)
        response = flask.current_app.response_class(body, mimetype=mimetype)
        response.set_etag(etag)
        return response.make_conditional(flask.request)

    @functools.cached_property
    def _documents(self) -> dict[tuple[str, str], tuple[bytes, str]]:
        return {}


def docs_assets_blueprint() -> FlaskBlueprint:
    """Swagger UI's files, served from the installed package: the docs need no internet."""
    bp = FlaskBlueprint("mars_docs_assets", __name__)

    @bp.get("/api/docs/assets/<path:filename>")
    def docs_asset(filename: str) -> Response:
        return send_from_directory(DOCS_ASSETS, filename, max_age=86400)

    return bp


def smorest_config(version: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    settings = settings or {}
    contact = {"name": "MARS API"}
    if settings.get("API_CONTACT_URL"):
        contact["url"] = settings["API_CONTACT_URL"]
    if settings.get("API_CONTACT_EMAIL"):
        contact["email"] = settings["API_CONTACT_EMAIL"]
    return {
        "API_TITLE": "MARS API",
        "API_VERSION": version,
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "v1/openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/api/docs/assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {
            "deepLinking": True,
            "displayRequestDuration": True,
            "validatorUrl": None,
        },
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "The MARS platform API. Errors are RFC 9457 problem "
                "documents; lists use keyset cursors.",
                "license": {"name": "Apache 2.0", "identifier": "Apache-2.0"},
                "contact": contact,
            },
            "servers": [{"url": "/"}],
        },
    }
