"""A plugin that adds to the GraphQL schema (``mars_graphql``): a type of its own, a field on
the core's ``Me`` and on the projects plugin's ``Project``, and a mutation; installed through a
fake entry point by test_graphql.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ariadne import MutationType, ObjectType, QueryType

from mars_server import PluginInfo, hookimpl
from mars_server.graphql import GraphQLPart, requires

MARS_PLUGIN = PluginInfo(
    name="stars", version="1.0.0", requires=">=0.1", description="stars on projects"
)

SDL = '''
"""A star someone gave."""
type Star {
  """Who gave it."""
  by: ID!
}

extend type Query {
  """Every star given."""
  stars: [Star!]!
}

extend type Me {
  """How many stars you gave."""
  starsGiven: Int!
}

extend type Project {
  """How bright the project is."""
  brightness: Int!
}

extend type Mutation {
  """Give a star."""
  giveStar: Star!
  """Write a row, then fail: what it wrote must never be committed."""
  failAfterWriting(slug: String!): Boolean
}
'''

GIVEN: list[str] = []
query, mutation, me, project = QueryType(), MutationType(), ObjectType("Me"), ObjectType("Project")
query.set_field("stars", lambda *_: [{"by": by} for by in GIVEN])
me.set_field("starsGiven", lambda actor, _info: GIVEN.count(actor.id))
project.set_field("brightness", lambda project, _info: len(project.name))


@mutation.field("giveStar")
@requires("projects:write")
def give_star(_obj: Any, _info: Any) -> dict[str, str]:
    from mars_server.http import current_actor

    actor = current_actor()
    assert actor is not None
    GIVEN.append(actor.id)
    return {"by": actor.id}


@mutation.field("failAfterWriting")
def fail_after_writing(_obj: Any, _info: Any, slug: str) -> bool:
    import sqlalchemy as sa

    from mars_server.db import db

    db.session.execute(
        sa.text(
            "INSERT INTO projects (id, slug, name, description, visibility, created_at, "
            "updated_at, version) VALUES (:id, :slug, 'Half', '', 'public', :now, :now, 1)"
        ),
        {"id": f"prj_{slug}", "slug": slug, "now": dt.datetime.now(dt.UTC)},
    )
    raise RuntimeError("failed after writing")


@hookimpl
def mars_graphql() -> GraphQLPart:
    return GraphQLPart(SDL, [query, mutation, me, project])
