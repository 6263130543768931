"""Your account on GraphQL's ``Me``: what ``GET /api/v1/me`` answers, with its scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ariadne import EnumType, ObjectType

from mars_server.auth import accounts
from mars_server.graphql import GraphQLPart, batch, requires

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from mars_server.auth.models import User
    from mars_server.http import Actor

SDL = '''
"""Where an account stands: waiting for its e-mail address to be confirmed, in use, or disabled."""
enum AccountStatus {
  """Registered; the e-mail address is not confirmed yet."""
  PENDING
  """In use."""
  ACTIVE
  """Turned off by an admin: its tokens do not work."""
  DISABLED
}

extend type Me {
  """Your e-mail address (`account:read`)."""
  email: String!
  """The name shown to others (`account:read`); may be empty."""
  displayName: String!
  """Where your account stands (`account:read`)."""
  status: AccountStatus!
  """Your roles, such as `admin` and `member`, sorted (`account:read`)."""
  roles: [String!]!
  """Whether you must choose a new password before going on (`account:read`)."""
  mustChangePassword: Boolean!
  """When your account was made (`account:read`)."""
  createdAt: DateTime!
  """When you last signed in; null if never (`account:read`)."""
  lastLoginAt: DateTime
  """When your account is erased, if you asked for its deletion; null otherwise (`account:read`)."""
  deletionDueAt: DateTime
}
'''

me = ObjectType("Me")
status = EnumType(
    "AccountStatus", {"PENDING": "pending", "ACTIVE": "active", "DISABLED": "disabled"}
)


def _users(user_ids: list[str]) -> dict[str, User]:
    return {user_id: accounts.get_user(user_id) for user_id in user_ids}


def _user(actor: Actor, info: GraphQLResolveInfo) -> User:
    """The account behind ``Me`` (``me`` is only ever a person's), loaded once a request."""
    assert actor.user_id is not None
    user: User = batch(info, "auth.me", _users).load(actor.user_id)
    return user


def _account_field(name: str, read: Any) -> None:
    @requires("account:read")
    def resolve(actor: Actor, info: GraphQLResolveInfo) -> Any:
        return read(_user(actor, info))

    me.set_field(name, resolve)


_account_field("email", lambda user: user.email)
_account_field("displayName", lambda user: user.display_name)
_account_field("status", lambda user: user.status)
_account_field("roles", lambda user: sorted(user.role_names))  # as MeSchema
_account_field("mustChangePassword", lambda user: user.must_change_password)
_account_field("createdAt", lambda user: user.created_at)
_account_field("lastLoginAt", lambda user: user.last_login_at)
_account_field("deletionDueAt", lambda user: user.deletion_due_at)

PART = GraphQLPart(SDL, [me, status])
