"""Projects and their members in GraphQL: the same services as the REST views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ariadne import EnumType, MutationType, ObjectType, QueryType

from mars_projects import services
from mars_projects.schemas import ProjectQueryArgsSchema, ProjectSchema, ProjectUpdateSchema
from mars_server.graphql import (
    GraphQLPart,
    batch,
    connection,
    load_input,
    page_args,
    rate_limited,
    require_version,
    requires,
)
from mars_server.http import current_actor

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    from mars_projects.models import Project, ProjectMember
    from mars_server.http import Actor

SDL = '''
"""Who may see a project: anyone, or its members only."""
enum ProjectVisibility {
  PUBLIC
  PRIVATE
}

"""What a member may do: owners do anything, maintainers change the project and its members."""
enum ProjectRole {
  OWNER
  MAINTAINER
  MEMBER
}

"""A unit of work people share."""
type Project {
  """The project's id (`prj_...`)."""
  id: ID!
  """Unique; lower-case letters, digits and inner hyphens."""
  slug: String!
  """What people call it."""
  name: String!
  """What it is about; may be empty."""
  description: String!
  """Who may see it."""
  visibility: ProjectVisibility!
  """When it was created."""
  createdAt: DateTime!
  """When it last changed."""
  updatedAt: DateTime!
  """Changes with every change: send it back to updateProject and deleteProject."""
  version: Int!
  """The members and their roles, oldest first."""
  members: [ProjectMember!]! @cost(complexity: 5)
}

"""A person in a project, and their role."""
type ProjectMember {
  """The member's user id."""
  userId: ID!
  """What they may do in the project."""
  role: ProjectRole!
  """When they joined."""
  addedAt: DateTime!
}

"""A page of projects."""
type ProjectConnection {
  """The page's projects."""
  nodes: [Project!]!
  """Where the page ends, and whether another follows."""
  pageInfo: PageInfo!
}

"""A new project."""
input ProjectInput {
  """1-64 lower-case letters, digits and inner hyphens; unique."""
  slug: String!
  """1-200 characters."""
  name: String!
  """What it is about (the projects plugin's `description_max_length` at most)."""
  description: String = ""
  """Who may see it; private unless said."""
  visibility: ProjectVisibility = PRIVATE
}

"""What to change in a project: only the fields sent change."""
input ProjectChanges {
  """A new slug; unique."""
  slug: String
  """A new name."""
  name: String
  """A new description."""
  description: String
  """Who may see it from now on."""
  visibility: ProjectVisibility
}

extend type Query {
  """
  The projects you can see (`projects:read` for a token; none needed): public ones, and
  the private ones you are a member of. `sort` is one of `id`, `name`, `slug`,
  `created_at`, `updated_at`, with a leading `-` for descending; `q` searches the name,
  slug and description.
  """
  projects(
    first: Int
    after: String
    visibility: ProjectVisibility
    sort: String
    q: String
  ): ProjectConnection! @cost(complexity: 1, multipliers: ["first"])
  """A project you can see, by id; null when there is none (or you may not see it)."""
  project(id: ID!): Project @cost(complexity: 25)
}

extend type Mutation {
  """Create a project (`projects:write`, a person's token); you become its owner."""
  createProject(input: ProjectInput!): Project!
  """
  Change a project (`projects:write`; maintainers and owners). `version` is the one you
  read: a project changed since is a precondition-failed error, as REST's If-Match.
  """
  updateProject(id: ID!, version: Int!, input: ProjectChanges!): Project!
  """Delete a project (`projects:write`; owners), at the `version` you read. Returns its id."""
  deleteProject(id: ID!, version: Int!): ID!
  """Add a member, or change their role (`projects:write`; maintainers and owners)."""
  addProjectMember(projectId: ID!, userId: ID!, role: ProjectRole!): ProjectMember!
  """Remove a member, or leave the project yourself (`projects:write`). Returns true."""
  removeProjectMember(projectId: ID!, userId: ID!): Boolean!
}
'''

query = QueryType()
mutation = MutationType()
project_type = ObjectType("Project")
visibility = EnumType("ProjectVisibility", {"PUBLIC": "public", "PRIVATE": "private"})
role = EnumType("ProjectRole", {"OWNER": "owner", "MAINTAINER": "maintainer", "MEMBER": "member"})


def _actor() -> Actor:
    caller = current_actor()
    assert caller is not None  # requires() let only callers with a token in
    return caller


def _members_batch(info: GraphQLResolveInfo) -> Any:
    return batch(info, "projects.members", services.members_of, list)


@query.field("projects")
@requires("projects:read", optional=True)
def resolve_projects(
    _obj: Any, info: GraphQLResolveInfo, first: int, after: str | None = None, **filters: Any
) -> dict[str, Any]:
    args = load_input(ProjectQueryArgsSchema(), {k: v for k, v in filters.items() if v is not None})
    page = services.list_projects(current_actor(), page_args(first, after, **args))
    _members_batch(info).expect(project.id for project in page.items)
    return connection(page)


@query.field("project")
@requires("projects:read", optional=True)
def resolve_project(_obj: Any, _info: GraphQLResolveInfo, id: str) -> Project:
    return services.get_project(current_actor(), id)


@project_type.field("members")
@requires("projects:read", optional=True)  # as REST's list of members
def resolve_members(project: Project, info: GraphQLResolveInfo) -> list[ProjectMember]:
    return _members_batch(info).load(project.id)


@mutation.field("createProject")
@requires("projects:write")
@rate_limited("create_project")  # REST's 30 a minute, counted per project created
def resolve_create(_obj: Any, _info: GraphQLResolveInfo, input: dict[str, Any]) -> Project:
    return services.create_project_for(_actor(), load_input(ProjectSchema(), input))


@mutation.field("updateProject")
@requires("projects:write")
def resolve_update(
    _obj: Any,
    _info: GraphQLResolveInfo,
    id: str,
    version: int,
    input: dict[str, Any],
) -> Project:
    project = services.get_project(_actor(), id)
    require_version(project, version)
    changes = load_input(ProjectUpdateSchema(), input, partial=True)
    return services.update_project(_actor(), project, changes)


@mutation.field("deleteProject")
@requires("projects:write")
def resolve_delete(_obj: Any, _info: GraphQLResolveInfo, id: str, version: int) -> str:
    project = services.get_project(_actor(), id)
    require_version(project, version)
    services.delete_project(_actor(), project)
    return id


@mutation.field("addProjectMember")
@requires("projects:write")
def resolve_add_member(
    _obj: Any, _info: GraphQLResolveInfo, project_id: str, user_id: str, role: str
) -> ProjectMember:
    project = services.get_project(_actor(), project_id)
    return services.add_member(_actor(), project, user_id, role)


@mutation.field("removeProjectMember")
@requires("projects:write")
def resolve_remove_member(
    _obj: Any, _info: GraphQLResolveInfo, project_id: str, user_id: str
) -> bool:
    project = services.get_project(_actor(), project_id)
    services.remove_member(_actor(), project, user_id)
    return True


PART = GraphQLPart(SDL, [query, mutation, project_type, visibility, role])
