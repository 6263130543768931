"""Your notifications in GraphQL: the same services, scopes and cursors as REST's
``/api/v1/me/notifications``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ariadne import MutationType, ObjectType

from mars_server.graphql import GraphQLPart, connection, load_input, page_args, requires
from mars_server.notifications import services
from mars_server.notifications.schemas import NotificationQueryArgsSchema
from mars_server.notifications.views import my_id

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from mars_server.http import Actor
    from mars_server.notifications.models import Notification

SDL = '''
"""Something that happened which concerns you, told in your inbox."""
type Notification {
  """Its id (`ntf_...`)."""
  id: ID!
  """The id of the event it tells of."""
  eventId: ID!
  """The type of that event, such as `project.member_added`."""
  eventType: String!
  """One line saying what happened."""
  title: String!
  """What happened, in a few sentences."""
  body: String!
  """Where to look: an API path or an address; may be null."""
  link: String
  """When what it tells of happened."""
  createdAt: DateTime!
  """When you marked it read; null while unread."""
  readAt: DateTime
}

"""A page of notifications."""
type NotificationConnection {
  """The notifications of this page, newest first."""
  nodes: [Notification!]!
  """Whether another page follows, and where it starts."""
  pageInfo: PageInfo!
}

extend type Me {
  """
  Your notifications, newest first (`notifications:read`), with the same cursors as REST's
  `GET /api/v1/me/notifications`.
  """
  notifications(
    """How many to return: 1 to 200."""
    first: Int
    """The `endCursor` of the previous page."""
    after: String
    """True: only unread ones; false: only read ones; absent: all."""
    unread: Boolean
  ): NotificationConnection! @cost(complexity: 1, multipliers: ["first"])
  """How many of your notifications are unread (`notifications:read`)."""
  unreadNotifications: Int!
}

extend type Mutation {
  """
  Mark one of your notifications read (`notifications:write`); one read already keeps the
  time it was first read. Another person's notification is not found.
  """
  markNotificationRead(
    """The notification's id."""
    id: ID!
  ): Notification!
  """Mark every unread notification of yours read (`notifications:write`); returns how many."""
  markAllNotificationsRead: Int!
}
'''

me = ObjectType("Me")
mutation = MutationType()


@me.field("notifications")
@requires("notifications:read")
def resolve_notifications(
    actor: Actor,
    _info: GraphQLResolveInfo,
    first: int,
    after: str | None = None,
    unread: bool | None = None,
) -> dict[str, Any]:
    # REST's query string spells booleans `true` and `false`; its schema reads only those.
    filters = {} if unread is None else {"unread": "true" if unread else "false"}
    args = load_input(NotificationQueryArgsSchema(), filters)
    assert actor.user_id is not None  # `me` is only ever a person
    return connection(services.list_notifications(actor.user_id, page_args(first, after, **args)))


@me.field("unreadNotifications")
@requires("notifications:read")
def resolve_unread(actor: Actor, _info: GraphQLResolveInfo) -> int:
    assert actor.user_id is not None
    return services.unread_count(actor.user_id)


@mutation.field("markNotificationRead")
@requires("notifications:write")
def resolve_mark_read(_obj: Any, _info: GraphQLResolveInfo, id: str) -> Notification:
    return services.mark_read(my_id(), id)


@mutation.field("markAllNotificationsRead")
@requires("notifications:write")
def resolve_mark_all_read(_obj: Any, _info: GraphQLResolveInfo) -> int:
    return services.mark_all_read(my_id())


PART = GraphQLPart(SDL, [me, mutation])
