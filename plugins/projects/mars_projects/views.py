"""The projects API: ``/api/v1/projects``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import url_for
from flask.views import MethodView

from mars_projects import services
from mars_projects.schemas import (
    MemberListSchema,
    MemberSchema,
    ProjectPageSchema,
    ProjectQueryArgsSchema,
    ProjectSchema,
    ProjectUpdateSchema,
)
from mars_server.http import Blueprint, current_actor, require_if_match, send_etag, send_page

if TYPE_CHECKING:
    from mars_projects.models import Project
    from mars_server.http import Actor

blp = Blueprint(
    "projects",
    __name__,
    url_prefix="/projects",
    description="Projects: the units of work people share.",
)


def actor() -> Actor:
    """The caller of a view that requires a token (``requires`` has checked there is one)."""
    caller = current_actor()
    assert caller is not None
    return caller


@blp.route("")
class Projects(MethodView):
    @blp.requires("projects:read", optional=True)
    @blp.doc(operationId="list_projects")
    # Anonymous callers all see the same public projects: any cache may keep them briefly.
    @blp.cache_control(public_max_age=30)
    @blp.arguments(ProjectQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, ProjectPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List the projects you can see, oldest first

        Needs no token, but a token sent must carry `projects:read`. Anonymous callers and apps
        acting for themselves see public projects only; a person also sees the private projects they
        are a member of. Filter with `visibility`; follow `next_cursor` or the `Link` header for the
        next page.
        """
        return send_page(services.list_projects(current_actor(), args))

    @blp.requires("projects:write")
    @blp.doc(operationId="create_project")
    # People create a project now and then; a script creating many must slow down.
    @blp.rate_limit("30/minute")
    @blp.arguments(ProjectSchema)
    @blp.response(201, ProjectSchema)
    def post(self, data: dict[str, Any]) -> tuple[Project, dict[str, str]]:
        """Create a project; you become its owner

        Needs `projects:write` and a token of a person, who becomes the project's only owner;
        `visibility` defaults to `private`. A `slug` already taken is 409. Limited to 30 projects a
        minute per caller; emits `project.created`.
        """
        project = services.create_project_for(actor(), data)
        location = url_for("projects.ProjectById", project_id=project.id)
        return send_etag(project), {"Location": location}


@blp.route("/<string:project_id>")
class ProjectById(MethodView):
    @blp.requires("projects:read", optional=True)
    @blp.doc(operationId="get_project")
    @blp.response(200, ProjectSchema)
    def get(self, project_id: str) -> Project:
        """Get a project

        Needs no token for a public project (a token sent must carry `projects:read`); a private
        project is visible to its members only, and 404 to everyone else. The answer carries an
        `ETag` for `If-Match`.
        """
        return send_etag(services.get_project(current_actor(), project_id))

    @blp.requires("projects:write")
    @blp.doc(operationId="update_project")
    @blp.arguments(ProjectUpdateSchema)
    @blp.response(200, ProjectSchema)
    def patch(self, changes: dict[str, Any], project_id: str) -> Project:
        """Change a project (maintainers and owners; send If-Match)

        Needs `projects:write` and the owner or maintainer role in the project; send `If-Match` and
        only the fields to change. A `slug` already taken is 409; a real change emits
        `project.updated`.
        """
        project = services.get_project(actor(), project_id)
        require_if_match(project)
        return send_etag(services.update_project(actor(), project, changes))

    @blp.requires("projects:write")
    @blp.doc(operationId="delete_project")
    @blp.response(204)
    def delete(self, project_id: str) -> None:
        """Delete a project (owners; send If-Match)

        Needs `projects:write`, the owner role in the project and `If-Match`. Emits
        `project.deleted`; the project's tasks are removed with it, in the background.
        """
        project = services.get_project(actor(), project_id)
        require_if_match(project)
        services.delete_project(actor(), project)


@blp.route("/<string:project_id>/members")
class Members(MethodView):
    @blp.requires("projects:read", optional=True)
    @blp.doc(operationId="list_project_members")
    @blp.response(200, MemberListSchema)
    def get(self, project_id: str) -> dict[str, Any]:
        """List a project's members and their roles

        Needs no token for a public project (a token sent must carry `projects:read`); a private
        project's members are listed to its members only, and anyone else gets 404. Returns each
        member's `user_id`, `role` and `added_at`, oldest first.
        """
        project = services.get_project(current_actor(), project_id)
        return {"items": services.list_members(project)}

    @blp.requires("projects:write")
    @blp.doc(operationId="add_project_member")
    @blp.arguments(MemberSchema)
    @blp.response(200, MemberSchema)
    def post(self, data: dict[str, str], project_id: str) -> Any:
        """Add a member, or change their role (maintainers and owners)

        Needs `projects:write` and the owner or maintainer role; making someone an owner, or
        changing an owner's role, needs the owner role. `user_id` must be an active account (422
        otherwise), and a project keeps at least one owner (409). Emits `project.member_added` or
        `project.member_updated`.
        """
        project = services.get_project(actor(), project_id)
        return services.add_member(actor(), project, data["user_id"], data["role"])


@blp.route("/<string:project_id>/members/<string:user_id>")
class MemberById(MethodView):
    @blp.requires("projects:write")
    @blp.doc(operationId="remove_project_member", **{"x-mars-if-match": False})
    @blp.response(204)
    def delete(self, project_id: str, user_id: str) -> None:
        """Remove a member (maintainers and owners), or leave the project yourself

        Needs `projects:write`; no `If-Match`. Anyone may remove themselves; removing someone else
        needs the owner or maintainer role, and removing an owner needs the owner role. The last
        owner cannot leave (409); emits `project.member_removed`.
        """
        project = services.get_project(actor(), project_id)
        services.remove_member(actor(), project, user_id)
