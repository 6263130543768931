"""``/api/v1/graphql`` (GraphQL over HTTP) and GraphiQL at ``/api/graphql``, offline.

POST runs queries and mutations (``application/json``: ``query``, ``variables``,
``operationName``); GET runs queries only. A request GraphQL cannot run at all (no query, a
malformed body) is a problem (RFC 9457); errors in the document (syntax, unknown fields,
limits) and in fields are GraphQL ``errors``, each with the problem's ``type``, ``title``
and ``status`` in its ``extensions``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import graphene_django_graphiql_static
from ariadne import graphql_sync
from ariadne.validation import cost_validator
from flask import Blueprint, Response, current_app, g, request, send_from_directory
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_operation_ast,
    parse,
)
from graphql.execution.values import get_variable_values

from mars_server.graphql.kit import GraphQLContext
from mars_server.http.problems import (
    PROBLEM_TYPE_PREFIX,
    BadRequest,
    MarsError,
    ValidationFailed,
    is_known,
    known_problem,
)
from mars_server.http.security import current_actor
from mars_server.state import mars_state

if TYPE_CHECKING:
    from graphql import GraphQLSchema

log = logging.getLogger(__name__)

ENDPOINT = "/api/v1/graphql"
GRAPHIQL = "/api/graphql"
ASSETS = (
    Path(graphene_django_graphiql_static.__file__).parent
    / "static"
    / "graphene_django_graphiql_static"
)
HERE = Path(__file__).parent / "static"
#: The media type of GraphQL over HTTP; ``application/json`` is still answered to clients
#: that ask for it (or for anything).
GRAPHQL_RESPONSE = "application/graphql-response+json"
INVALID = PROBLEM_TYPE_PREFIX + "graphql-invalid"
LIMIT = PROBLEM_TYPE_PREFIX + "graphql-limit"
#: A document longer than this many tokens is refused before it is parsed further.
MAX_TOKENS = 5000
#: How often one document may ask for the schema (GraphiQL and code generators ask once).
MAX_INTROSPECTION = 2

#: GraphiQL runs only its own scripts, and talks only to this server.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

blueprint = Blueprint("mars_graphql", __name__)


def depth_limit(maximum: int) -> type[ValidationRule]:
    """A rule refusing operations whose fields nest deeper than ``maximum``.

    Each fragment's depth is worked out once, however often it is spread: a document of
    fragments spreading each other twice is as cheap to check as it is to read.
    """

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments: dict[str, int] = {}

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            depth = self._depth(node.selection_set, frozenset())
            if depth > maximum:
                self.report_error(
                    GraphQLError(
                        f"The operation nests {depth} fields deep; at most {maximum} may be.",
                        node,
                        extensions={"type": LIMIT, "status": 400, "limit": "depth"},
                    )
                )

        def _depth(self, selections: SelectionSetNode | None, seen: frozenset[str]) -> int:
            """How deep ``selections`` nest below where they are."""
            deepest = 0
            for selection in selections.selections if selections else ():
                if isinstance(selection, FieldNode):
                    if selection.name.value.startswith("__"):
                        continue  # introspection: graphql-core's own rule limits its depth
                    deepest = max(deepest, 1 + self._depth(selection.selection_set, seen))
                elif isinstance(selection, InlineFragmentNode):
                    deepest = max(deepest, self._depth(selection.selection_set, seen))
                elif isinstance(selection, FragmentSpreadNode):
                    deepest = max(deepest, self._fragment(selection.name.value, seen))
            return deepest

        def _fragment(self, name: str, seen: frozenset[str]) -> int:
            if name not in self.fragments:
                fragment = self.context.get_fragment(name)
                if fragment is None or name in seen:  # unknown, or a cycle: other rules' errors
                    return 0
                self.fragments[name] = self._depth(fragment.selection_set, seen | {name})
            return self.fragments[name]

    return DepthLimit


def introspection_limit(maximum: int) -> type[ValidationRule]:
    """A rule refusing documents that ask for the schema (``__schema``, ``__type``) more than
    ``maximum`` times: its answer is large, and no client needs it twice at once."""

    class IntrospectionLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.name.value in ("__schema", "__type"):
                self.count += 1
                if self.count == maximum + 1:
                    self.report_error(
                        GraphQLError(
                            f"The document asks for the schema more than {maximum} times.",
                            node,
                            extensions={"type": LIMIT, "status": 400, "limit": "introspection"},
                        )
                    )

    return IntrospectionLimit


class _UnexpectedErrors(logging.LoggerAdapter):
    """Ariadne logs every error of a result; only a resolver's bug is worth a log line
    (a problem it raised on purpose is the caller's, and answered)."""

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        original = getattr(msg, "original_error", None)
        if (
            original is not None
            and not isinstance(original, GraphQLError)
            and not is_known(original)
        ):
            # The type only in the message: an exception's text may quote data (as REST).
            self.logger.error(
                "a GraphQL resolver failed: %s", type(original).__name__, exc_info=original
            )


ERRORS_LOG = _UnexpectedErrors(log, {})


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """A GraphQL error with its problem (type, title, status and details) in
    ``extensions``; never a stack trace."""
    formatted: dict[str, Any] = error.formatted  # type: ignore[assignment]
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        # A resolver's failure: the problem REST answers it with (a MarsError, a database
        # refusal), or a bug's 500.
        answered = known_problem(original)
        if answered is None:
            formatted["message"] = "The server failed; quote the request_id when you report it."
            extensions = {"type": "about:blank", "title": "Internal Server Error", "status": 500}
        else:
            problem = json.loads(answered.get_data())
            # A validation error says which fields, and what is wrong with each, in one line.
            message = original.message if isinstance(original, ValidationFailed) else None
            formatted["message"] = message or problem.get("detail") or problem["title"]
            extensions = {k: v for k, v in problem.items() if k not in ("detail", "request_id")}
    else:  # the document: syntax, validation, variables, limits
        extensions = {"type": INVALID, "title": "The GraphQL document is not valid.", "status": 400}
        extensions.update(formatted.get("extensions") or {})
        if "cost" in extensions:  # the cost validator's
            extensions["type"], extensions["limit"] = LIMIT, "cost"
    extensions["request_id"] = g.get("request_id", "")
    formatted["extensions"] = extensions
    return formatted


def _parse(_context: Any, data: dict[str, Any]) -> Any:
    return parse(data["query"], max_tokens=MAX_TOKENS)


def _request_data() -> dict[str, Any]:
    if request.method == "GET":
        data: dict[str, Any] = {
            "query": request.args.get("query"),
            "operationName": request.args.get("operationName"),
        }
        if request.args.get("variables"):
            try:
                data["variables"] = json.loads(request.args["variables"])
            except ValueError:
                raise BadRequest("`variables` is not JSON.") from None
    else:
        if not request.is_json:
            raise MarsError(
                "Send the GraphQL request as JSON (Content-Type: application/json).",
                status=415,
            )
        data = request.get_json()
        if not isinstance(data, dict):
            raise BadRequest("The body is a JSON object: query, variables, operationName.")
    if not isinstance(data.get("query"), str) or not data["query"].strip():
        raise BadRequest("Send a GraphQL document as `query`.")
    if not isinstance(data.get("variables") or {}, dict):
        raise BadRequest("`variables` is a JSON object.")
    if not isinstance(data.get("operationName") or "", str):
        raise BadRequest("`operationName` is a string.")
    return {key: data.get(key) for key in ("query", "variables", "operationName")}


def execute(schema: GraphQLSchema, data: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Run ``data`` (``query``, ``variables``, ``operationName``) with the limits of the
    settings: how deep it may nest, and what it may cost."""
    settings = current_app.config["MARS"]

    def rules(_context: Any, document: DocumentNode, data: dict[str, Any]) -> list[Any]:
        return [
            depth_limit(settings["GRAPHQL_MAX_DEPTH"]),
            introspection_limit(MAX_INTROSPECTION),
            cost_validator(
                maximum_cost=settings["GRAPHQL_MAX_COST"],
                default_cost=1,
                variables=_variables(schema, document, data),
            ),
        ]

    return graphql_sync(
        schema,
        data,
        context_value=GraphQLContext(),
        query_parser=_parse,
        validation_rules=rules,
        error_formatter=format_error,
        logger=ERRORS_LOG,
        introspection=True,
    )


@blueprint.route(ENDPOINT, methods=["GET", "POST"])
def graphql_endpoint() -> Response:
    data = _request_data()
    current_actor()  # a token that is not valid is a 401 for the whole request, as in REST
    if request.method == "GET" and _operation(data) not in (None, OperationType.QUERY):
        raise MarsError(
            "GET runs queries only: send a mutation by POST.", status=405, headers={"Allow": "POST"}
        )
    _success, result = execute(mars_state().graphql_schema, data)
    if any(_retry_may_succeed(error) for error in result.get("errors") or ()):
        # As a 5xx or 429 does in REST: unless something was committed, the key is freed.
        g.mars_retry_may_succeed = True
    media_type = request.accept_mimetypes.best_match(
        [GRAPHQL_RESPONSE, "application/json"], default=GRAPHQL_RESPONSE
    )
    # GraphQL over HTTP: with its own media type, a document that cannot run is a 400;
    # application/json clients get 200 and read ``errors``.
    status = 400 if _not_run(result) and media_type == GRAPHQL_RESPONSE else 200
    return current_app.response_class(
        current_app.json.dumps(result), status=status, mimetype=media_type
    )


def _retry_may_succeed(error: dict[str, Any]) -> bool:
    status = (error.get("extensions") or {}).get("status")
    return isinstance(status, int) and (status >= 500 or status == 429)


def _variables(schema: GraphQLSchema, document: DocumentNode, data: dict[str, Any]) -> Any:
    """The operation's variables with their defaults (what the cost of ``first: $first``
    is counted with); as sent when they do not fit (execution then says why)."""
    sent = data.get("variables") or {}
    try:
        operation = get_operation_ast(document, data.get("operationName"))
    except GraphQLError:
        return sent
    if operation is None:
        return sent
    coerced = get_variable_values(schema, operation.variable_definitions or (), sent)
    if isinstance(coerced, list):  # errors
        return sent
    return getattr(coerced, "coerced", coerced)  # graphql-core 3.3 wraps them


def _not_run(result: dict[str, Any]) -> bool:
    """Whether the document never ran: no data, and errors of no field (a field's error has
    a ``path``): syntax, validation, limits, variables."""
    errors = result.get("errors") or ()
    return result.get("data") is None and bool(errors) and not any("path" in e for e in errors)


def _operation(data: dict[str, Any]) -> OperationType | None:
    """The operation a GET would run; ``None`` when the document does not say (it is
    answered with its errors)."""
    try:
        operation = get_operation_ast(_parse(None, data), data.get("operationName"))
    except GraphQLError:
        return None
    return operation.operation if operation is not None else None


@blueprint.get(GRAPHIQL)
def graphiql() -> Response:
    """GraphiQL, its scripts and styles from installed packages: no internet needed."""
    response = send_from_directory(HERE, "graphiql.html", max_age=0)
    response.headers["Content-Security-Policy"] = GRAPHIQL_CSP
    return response


@blueprint.get(f"{GRAPHIQL}/assets/<path:filename>")
def graphiql_asset(filename: str) -> Response:
    if filename == "mars-graphiql.js":
        return send_from_directory(HERE, filename, max_age=3600)
    return send_from_directory(ASSETS, filename, max_age=86400)
