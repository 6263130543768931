"""The projects API: ``/api/v1/projects``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import url_for
from flask.views import MethodView

from mars_projects import services
from mars_projects.schemas import (
    ProjectPageSchema,
    ProjectQueryArgsSchema,
    ProjectSchema,
    ProjectUpdateSchema,
)
from mars_server.http import Blueprint, require_if_match, send_etag, send_page

if TYPE_CHECKING:
    from mars_projects.models import Project

blp = Blueprint(
    "projects",
    __name__,
    url_prefix="/projects",
    description="Projects: the units of work people share.",
)


@blp.route("")
class Projects(MethodView):
    @blp.doc(operationId="list_projects")
    @blp.arguments(ProjectQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, ProjectPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List projects, oldest first"""
        return send_page(services.list_projects(args))

    @blp.doc(operationId="create_project")
    @blp.arguments(ProjectSchema)
    @blp.response(201, ProjectSchema)
    def post(self, data: dict[str, Any]) -> tuple[Project, dict[str, str]]:
        """Create a project"""
        project = services.create_project(data)
        location = url_for("projects.ProjectById", project_id=project.id)
        return send_etag(project), {"Location": location}


@blp.route("/<string:project_id>")
class ProjectById(MethodView):
    @blp.doc(operationId="get_project")
    @blp.response(200, ProjectSchema)
    def get(self, project_id: str) -> Project:
        """Get a project"""
        return send_etag(services.get_project(project_id))

    @blp.doc(operationId="update_project")
    @blp.arguments(ProjectUpdateSchema(partial=True))
    @blp.response(200, ProjectSchema)
    def patch(self, changes: dict[str, Any], project_id: str) -> Project:
        """Change a project (send If-Match)"""
        project = services.get_project(project_id)
        require_if_match(project)
        return send_etag(services.update_project(project, changes))

    @blp.doc(operationId="delete_project")
    @blp.response(204)
    def delete(self, project_id: str) -> None:
        """Delete a project (send If-Match)"""
        project = services.get_project(project_id)
        require_if_match(project)
        services.delete_project(project)
