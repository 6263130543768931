"""GraphQL beside REST: what a plugin's resolvers use (docs/graphql.md).

A plugin adds its types and fields with the ``mars_graphql`` hook; its resolvers call the
same services as its REST views, and check tokens with :func:`requires`, which is
``Blueprint.requires``' check. Lists are connections over :func:`mars_server.http.paginate`
(the same keyset cursors as REST): :func:`page_args` turns ``first``/``after`` into its
arguments and :func:`connection` answers its page. :func:`batch` loads what the items of a
list need in one query, not one per item.
"""

from __future__ import annotations

from mars_server.graphql.kit import (
    Batch,
    GraphQLContext,
    batch,
    connection,
    load_input,
    page_args,
    rate_limited,
    require_version,
    requires,
)
from mars_server.hookspecs import GraphQLPart

__all__ = [
    "Batch",
    "GraphQLContext",
    "GraphQLPart",
    "batch",
    "connection",
    "load_input",
    "page_args",
    "rate_limited",
    "require_version",
    "requires",
]
