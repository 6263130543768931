"""Your webhook endpoints and their delivery logs in GraphQL, read-only: the same services,
scopes and cursors as REST's ``/api/v1/webhooks``. Never a secret, and no delivery's body
(REST shows that only with the scope of the event it carries)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ariadne import EnumType, ObjectType, QueryType

from mars_server.graphql import (
    GraphQLPart,
    batch,
    connection,
    load_input,
    page_args,
    requires,
)
from mars_server.http import Page, current_actor
from mars_server.webhooks import services
from mars_server.webhooks.models import BY_OWNER, FAILED, FAILING, GONE, PENDING, SUCCEEDED
from mars_server.webhooks.schemas import DeliveryQueryArgsSchema, WebhookQueryArgsSchema

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from mars_server.webhooks.models import WebhookEndpoint

SDL = '''
"""Why a webhook endpoint gets no deliveries."""
enum WebhookDisabledReason {
  """Its owner disabled it."""
  BY_OWNER
  """It answered 410 Gone."""
  GONE
  """Every delivery failed for too long."""
  FAILING
}

"""Where a delivery stands."""
enum WebhookDeliveryStatus {
  """Waiting for its next attempt, or its first."""
  PENDING
  """The endpoint accepted it."""
  SUCCEEDED
  """Every attempt failed, or the endpoint went away or was disabled."""
  FAILED
}

"""A URL of yours that receives the events it subscribes to, signed as Standard Webhooks."""
type Webhook {
  """Its id (`whk_...`)."""
  id: ID!
  """Where deliveries are POSTed."""
  url: String!
  """What it is for, in your words; may be empty."""
  description: String!
  """The event types it receives, sorted."""
  events: [String!]!
  """Whether deliveries are stopped."""
  disabled: Boolean!
  """Why deliveries are stopped; null while enabled."""
  disabledReason: WebhookDisabledReason
  """When deliveries stopped; null while enabled."""
  disabledAt: DateTime
  """Since when every attempt has failed; null after a success."""
  failingSince: DateTime
  """
  Until then, deliveries are also signed with the secret before the last rotation; null
  when there is none.
  """
  previousSecretExpiresAt: DateTime
  """When it was made."""
  createdAt: DateTime!
  """When it last changed."""
  updatedAt: DateTime!
  """
  Its deliveries, oldest first, each with its last attempt's outcome (`webhooks:read`).
  Finished deliveries are kept 30 days by default.
  """
  deliveries(
    """How many to return: 1 to 200."""
    first: Int
    """The `endCursor` of the previous page."""
    after: String
    """Only deliveries in this state."""
    status: WebhookDeliveryStatus
  ): WebhookDeliveryConnection! @cost(complexity: 1, multipliers: ["first"])
}

"""A page of webhook endpoints."""
type WebhookConnection {
  """The endpoints of this page, oldest first."""
  nodes: [Webhook!]!
  """Whether another page follows, and where it starts."""
  pageInfo: PageInfo!
}

"""One event sent to one endpoint, and how its latest attempt went."""
type WebhookDelivery {
  """The `webhook-id` header (`msg_...`): the same on every attempt and redelivery."""
  id: ID!
  """The id of the event it carries."""
  eventId: ID!
  """The type of that event."""
  eventType: String!
  """Where it stands."""
  status: WebhookDeliveryStatus!
  """How many attempts were made, over every series."""
  attemptCount: Int!
  """When the last attempt was made; null before the first."""
  lastAttemptAt: DateTime
  """The last attempt's HTTP status; null when none came."""
  responseStatus: Int
  """How long the last attempt took, in milliseconds."""
  durationMs: Int
  """Why the last attempt failed."""
  error: String
  """When it was queued."""
  createdAt: DateTime!
  """When it succeeded or finally failed; null while pending."""
  completedAt: DateTime
  """
  The long-running operation of the latest redelivery (REST's `/api/v1/operations/{id}`);
  null until it is redelivered.
  """
  operationId: ID
}

"""A page of deliveries."""
type WebhookDeliveryConnection {
  """The deliveries of this page, oldest first."""
  nodes: [WebhookDelivery!]!
  """Whether another page follows, and where it starts."""
  pageInfo: PageInfo!
}

extend type Query {
  """
  Your webhook endpoints, oldest first (`webhooks:read`, a person's token), without their
  secrets; the same cursors as REST's `GET /api/v1/webhooks`.
  """
  webhooks(
    """How many to return: 1 to 200."""
    first: Int
    """The `endCursor` of the previous page."""
    after: String
  ): WebhookConnection! @cost(complexity: 1, multipliers: ["first"])
  """One of your webhook endpoints (`webhooks:read`); null when you have none with that id."""
  webhook(
    """The endpoint's id."""
    id: ID!
  ): Webhook @cost(complexity: 25)
}
'''

#: ``info.context.listed``'s name for the endpoints a list of webhooks showed
LISTED = "webhooks"

query = QueryType()
webhook_type = ObjectType("Webhook")
disabled_reason = EnumType(
    "WebhookDisabledReason", {"BY_OWNER": BY_OWNER, "GONE": GONE, "FAILING": FAILING}
)
delivery_status = EnumType(
    "WebhookDeliveryStatus", {"PENDING": PENDING, "SUCCEEDED": SUCCEEDED, "FAILED": FAILED}
)


def _owner_id() -> str:
    """The person whose endpoints the caller reads, as REST's views find them."""
    actor = current_actor()
    assert actor is not None  # requires() let only callers with a token in
    return services.owner_id_of(actor)


@query.field("webhooks")
@requires("webhooks:read")
def resolve_webhooks(
    _obj: Any, info: GraphQLResolveInfo, first: int, after: str | None = None
) -> dict[str, Any]:
    args = load_input(WebhookQueryArgsSchema(), {})
    page = services.list_endpoints(_owner_id(), page_args(first, after, **args))
    # Their deliveries' first pages are read together (resolve_deliveries).
    info.context.listed.setdefault(LISTED, []).extend(endpoint.id for endpoint in page.items)
    return connection(page)


@query.field("webhook")
@requires("webhooks:read")
def resolve_webhook(_obj: Any, _info: GraphQLResolveInfo, id: str) -> WebhookEndpoint:
    return services.get_endpoint(_owner_id(), id)


@webhook_type.field("deliveries")
@requires("webhooks:read")
def resolve_deliveries(
    endpoint: WebhookEndpoint,
    info: GraphQLResolveInfo,
    first: int,
    after: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    # `endpoint` came from get_endpoint or list_endpoints: the caller's own.
    args = page_args(
        first,
        after,
        **load_input(DeliveryQueryArgsSchema(), {} if status is None else {"status": status}),
    )
    if after is not None:  # a later page: one endpoint's, on its own
        return connection(services.list_deliveries(endpoint, args))
    # The first pages of every listed endpoint's deliveries, asked alike, in one query.
    first_pages = batch(
        info,
        f"webhooks.deliveries:{first}:{status}",
        lambda ids: services.first_deliveries(ids, args),
        missing=lambda: Page([], None),
    )
    first_pages.expect(info.context.listed.get(LISTED, ()))
    return connection(first_pages.load(endpoint.id))


PART = GraphQLPart(SDL, [query, webhook_type, disabled_reason, delivery_status])
