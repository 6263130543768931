"""The audit log in GraphQL, for admins: the same service, scope, permission, filters and
cursors as REST's ``GET /api/v1/audit``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ariadne import QueryType, ScalarType

from mars_server.audit import services
from mars_server.audit.schemas import AuditQueryArgsSchema
from mars_server.graphql import GraphQLPart, connection, load_input, page_args, requires

if TYPE_CHECKING:
    import datetime as dt

    from graphql import GraphQLResolveInfo

SDL = '''
"""
What else matters about an audit entry: a JSON object, as REST's `details`. Secrets are
never recorded.
"""
scalar AuditDetails

"""A whole number that may pass 32 bits, as a JSON number (GraphQL's Int stops at 2**31)."""
scalar Long

"""One change or security event, in the append-only, hash-chained audit log."""
type AuditEntry {
  """Its id (`aud_...`); ids are time-ordered."""
  id: ID!
  """When it happened."""
  occurredAt: DateTime!
  """
  The user or OAuth client that acted; `cli:<login>` for an operator's command; null when
  anonymous.
  """
  actorId: String
  """An event type (`project.created`) or a security event."""
  action: String!
  """The public id of what it happened to."""
  target: String
  """The IP address the request came from."""
  address: String
  """The request's User-Agent."""
  userAgent: String
  """The request's X-Request-ID."""
  requestId: String
  """What else matters; secrets are never recorded."""
  details: AuditDetails!
  """Its place in the hash chain; null until sealed (a few seconds)."""
  seq: Long
  """The hash of the entry before it in the chain; null until sealed."""
  prevHash: String
  """Its hash in the chain; null until sealed."""
  hash: String
}

"""A page of audit entries."""
type AuditEntryConnection {
  """The entries of this page."""
  nodes: [AuditEntry!]!
  """Whether another page follows, and where it starts."""
  pageInfo: PageInfo!
}

extend type Query {
  """
  The audit log, oldest first (`audit:read` and the admin role), filtered as REST's
  `GET /api/v1/audit`, with the same cursors.
  """
  auditEntries(
    """How many to return: 1 to 200."""
    first: Int
    """The `endCursor` of the previous page."""
    after: String
    """Only entries of this actor id."""
    actor: String
    """Only entries about this id."""
    target: String
    """
    Only this action; end it with `*` (`project.*`) for every action that starts with what
    comes before.
    """
    action: String
    """Only entries that occurred at or after this time."""
    since: DateTime
    """Only entries that occurred before this time."""
    until: DateTime
    """`id`: oldest first (the default); `-id`: newest first."""
    sort: String
  ): AuditEntryConnection! @cost(complexity: 1, multipliers: ["first"])
}
'''

query = QueryType()
details = ScalarType("AuditDetails", serializer=dict)
long = ScalarType("Long", serializer=int)


def _as_query(value: Any) -> Any:
    """A filter as REST's query string has it: its schema reads times as ISO 8601 text."""
    return value.isoformat() if hasattr(value, "isoformat") else value


@query.field("auditEntries")
@requires("audit:read", permission="audit:read")
def resolve_audit_entries(
    _obj: Any,
    _info: GraphQLResolveInfo,
    first: int,
    after: str | None = None,
    **filters: str | dt.datetime | None,
) -> dict[str, Any]:
    given = {name: _as_query(value) for name, value in filters.items() if value is not None}
    args = load_input(AuditQueryArgsSchema(), given)
    return connection(services.list_records(page_args(first, after, **args)))


PART = GraphQLPart(SDL, [query, details, long])
