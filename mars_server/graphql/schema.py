"""One GraphQL schema from the core's part and every plugin's (``mars_graphql``)."""

from __future__ import annotations

import datetime as dt
from functools import wraps
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc as sa_exc
from ariadne import ObjectType, ScalarType, make_executable_schema
from ariadne.validation.query_cost import cost_directive
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    get_nullable_type,
    parse,
    print_ast,
    print_schema,
)

from mars_server.db import db
from mars_server.hookspecs import GraphQLPart
from mars_server.http.security import current_actor
from mars_server.plugins import PluginError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from graphql import GraphQLResolveInfo

    from mars_server.plugins import MarsPlugins

CORE_SDL = (
    cost_directive
    + '''
"""
An instant: ISO 8601 with its UTC offset, as in REST (`2026-12-07T20:46:03.120000+00:00`).
"""
scalar DateTime

"""Where a page of a connection ends, and whether another follows."""
type PageInfo {
  """Whether another page follows: pass `endCursor` as `after` to get it."""
  hasNextPage: Boolean!
  """
  The cursor of this page's end, null on the last page: the same cursor as REST's
  `next_cursor`, bound to the list's filters and order.
  """
  endCursor: String
}

"""The person the request acts for."""
type Me {
  """Their user id."""
  id: ID!
  """What the request's token allows: its scopes."""
  scopes: [String!]!
}

"""What can be read."""
type Query {
  """The person the request acts for; null without a token, or with an app's own token."""
  me: Me
}
'''
)


def _datetime_value(value: dt.datetime) -> str:
    return value.isoformat()


def _parse_datetime(value: Any) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise GraphQLError("A DateTime is ISO 8601 with its offset.") from None
    if parsed.tzinfo is None:
        raise GraphQLError("A DateTime needs its UTC offset (+00:00 or Z).")
    return parsed


def core_part() -> GraphQLPart:
    datetime = ScalarType("DateTime", serializer=_datetime_value, value_parser=_parse_datetime)
    query = ObjectType("Query")
    me = ObjectType("Me")

    @query.field("me")
    def resolve_me(_obj: Any, _info: GraphQLResolveInfo) -> Any:
        actor = current_actor()
        return actor if actor is not None and actor.user_id is not None else None

    me.set_field("scopes", lambda actor, _info: sorted(actor.scopes))
    return GraphQLPart(CORE_SDL, [datetime, query, me])


#: The root types a part may extend though no part defines them (the core defines Query).
ROOT_TYPES = ("Query", "Mutation")


def _promote_extensions(documents: Sequence[DocumentNode]) -> list[DocumentNode]:
    """A root type only ever extended (``Mutation``: no part defines it) is defined by its
    first extension, so plugins all write ``extend type Mutation``; extending any other
    type nobody defines stays an error."""
    defined = {
        node.name.value
        for document in documents
        for node in document.definitions
        if isinstance(node, ObjectTypeDefinitionNode)
    }
    promoted: list[DocumentNode] = []
    for document in documents:
        definitions = []
        for node in document.definitions:
            if (
                isinstance(node, ObjectTypeExtensionNode)
                and node.name.value in ROOT_TYPES
                and node.name.value not in defined
            ):
                defined.add(node.name.value)
                node = ObjectTypeDefinitionNode(
                    name=node.name,
                    interfaces=node.interfaces,
                    directives=node.directives,
                    fields=node.fields,
                )
            definitions.append(node)
        promoted.append(DocumentNode(definitions=tuple(definitions)))
    return promoted


def _mutation(resolve: Any) -> Any:
    """A mutation reads what the ones before it changed (nothing loaded before is reused),
    and one that fails leaves nothing behind for the next one to commit."""

    @wraps(resolve)
    def resolver(obj: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        info.context.batches.clear()
        info.context.listed.clear()
        try:
            return resolve(obj, info, **kwargs)
        except BaseException:
            db.session.rollback()
            raise

    return resolver


def _query(resolve: Any) -> Any:
    """A query field the database refused leaves a usable transaction to the next field
    (PostgreSQL refuses every statement of a transaction after an error)."""

    @wraps(resolve)
    def resolver(*args: Any, **kwargs: Any) -> Any:
        try:
            return resolve(*args, **kwargs)
        except sa_exc.SQLAlchemyError:
            db.session.rollback()
            raise

    return resolver


def _pages_by_default(schema: GraphQLSchema, page_size: int) -> None:
    """Every connection's ``first`` is ``Int!`` with MARS's default page size: omitted, it
    is ``MARS_PAGE_SIZE_DEFAULT``, and it can never be null (what the cost limit counts)."""
    for named in schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field in named.fields.values():
            first = field.args.get("first")
            if first is not None and get_nullable_type(first.type) is GraphQLInt:
                first.type = GraphQLNonNull(GraphQLInt)
                first.default_value = page_size


def _executable(parts: Sequence[tuple[str, GraphQLPart]]) -> GraphQLSchema:
    documents = []
    for name, part in parts:
        try:
            documents.append(parse(part.type_defs))
        except GraphQLError as exc:
            raise PluginError(f"plugin {name!r}: its GraphQL SDL: {exc.message}") from None
    type_defs = "\n".join(print_ast(document) for document in _promote_extensions(documents))
    bindables = [b for _name, part in parts for b in part.bindables]
    return make_executable_schema(type_defs, *bindables, convert_names_case=True)


def build_schema(plugins: MarsPlugins, page_size: int = 50) -> GraphQLSchema:
    """The schema of the core and the enabled plugins; a part that does not fit is a
    :class:`~mars_server.plugins.PluginError` naming its plugin. ``page_size`` is what a
    connection's ``first`` is when omitted."""
    parts = [("core", core_part()), *plugins.graphql_parts()]
    try:
        schema = _executable(parts)
    except (GraphQLError, TypeError, ValueError) as exc:
        for end in range(1, len(parts) + 1):  # the first part that does not fit
            try:
                _executable(parts[:end])
            except (GraphQLError, TypeError, ValueError) as first:
                raise PluginError(
                    f"plugin {parts[end - 1][0]!r}: its GraphQL part: {first}"
                ) from None
        raise PluginError(f"the GraphQL schema: {exc}") from None
    for root, wrap in ((schema.query_type, _query), (schema.mutation_type, _mutation)):
        for field in root.fields.values() if root is not None else ():
            if field.resolve is not None:
                field.resolve = wrap(field.resolve)
    _pages_by_default(schema, page_size)
    return schema


def sdl(schema: GraphQLSchema) -> str:
    """The schema as SDL, as ``mars graphql export`` writes it."""
    return print_schema(schema) + "\n"
