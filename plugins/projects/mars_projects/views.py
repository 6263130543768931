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
        """List the projects you can see, oldest first"""
        return send_page(services.list_projects(current_actor(), args))

    @blp.requires("projects:write")
    @blp.doc(operationId="create_project")
    # People create a project now and then; a script creating many must slow down.
    @blp.rate_limit("30/minute")
    @blp.arguments(ProjectSchema)
    @blp.response(201, ProjectSchema)
    def post(self, data: dict[str, Any]) -> tuple[Project, dict[str, str]]:
        """Create a project; you become its owner"""
        project = services.create_project_for(actor(), data)
        location = url_for("projects.ProjectById", project_id=project.id)
        return send_etag(project), {"Location": location}


@blp.route("/<string:project_id>")
class ProjectById(MethodView):
    @blp.requires("projects:read", optional=True)
    @blp.doc(operationId="get_project")
    @blp.response(200, ProjectSchema)
    def get(self, project_id: str) -> Project:
        """Get a project"""
        return send_etag(services.get_project(current_actor(), project_id))

    @blp.requires("projects:write")
    @blp.doc(operationId="update_project")
    @blp.arguments(ProjectUpdateSchema)
    @blp.response(200, ProjectSchema)
    def patch(self, changes: dict[str, Any], project_id: str) -> Project:
        """Change a project (maintainers and owners; send If-Match)"""
        project = services.get_project(actor(), project_id)
        require_if_match(project)
        return send_etag(services.update_project(actor(), project, changes))

    @blp.requires("projects:write")
    @blp.doc(operationId="delete_project")
    @blp.response(204)
    def delete(self, project_id: str) -> None:
        """Delete a project (owners; send If-Match)"""
        project = services.get_project(actor(), project_id)
        require_if_match(project)
        services.delete_project(actor(), project)


@blp.route("/<string:project_id>/members")
class Members(MethodView):
    @blp.requires("projects:read", optional=True)
    @blp.doc(operationId="list_project_members")
    @blp.response(200, MemberListSchema)
    def get(self, project_id: str) -> dict[str, Any]:
        """List a project's members and their roles"""
        project = services.get_project(current_actor(), project_id)
        return {"items": services.list_members(project)}

    @blp.requires("projects:write")
    @blp.doc(operationId="add_project_member")
    @blp.arguments(MemberSchema)
    @blp.response(200, MemberSchema)
    def post(self, data: dict[str, str], project_id: str) -> Any:
        """Add a member, or change their role (maintainers and owners)"""
        project = services.get_project(actor(), project_id)
        return services.add_member(actor(), project, data["user_id"], data["role"])


@blp.route("/<string:project_id>/members/<string:user_id>")
class MemberById(MethodView):
    @blp.requires("projects:write")
    @blp.doc(operationId="remove_project_member", **{"x-mars-if-match": False})
    @blp.response(204)
    def delete(self, project_id: str, user_id: str) -> None:
        """Remove a member (maintainers and owners), or leave the project yourself"""
        project = services.get_project(actor(), project_id)
        services.remove_member(actor(), project, user_id)
