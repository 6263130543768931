"""The tasks API: ``/api/v1/projects/{project_id}/tasks``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import url_for
from flask.views import MethodView

from mars_server.http import Blueprint, current_actor, require_if_match, send_etag, send_page
from mars_tasks import services
from mars_tasks.schemas import TaskPageSchema, TaskQueryArgsSchema, TaskSchema, TaskUpdateSchema

if TYPE_CHECKING:
    from mars_tasks.models import Task

blp = Blueprint(
    "tasks",
    __name__,
    url_prefix="/projects",
    description="Tasks: what the members of a project have to do.",
)


@blp.route("/<string:project_id>/tasks")
class Tasks(MethodView):
    @blp.requires("tasks:read", optional=True)
    @blp.doc(operationId="list_tasks")
    @blp.arguments(TaskQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, TaskPageSchema)
    def get(self, args: dict[str, Any], project_id: str) -> Any:
        """List a project's tasks, oldest first

        Needs no token for a public project (a token sent must carry `tasks:read`); a private
        project's tasks are visible to its members only, and 404 to others. Filter with `done=true`
        or `done=false`; follow `next_cursor` or the `Link` header for the next page.
        """
        return send_page(services.list_tasks(current_actor(), project_id, args))

    @blp.requires("tasks:write")
    @blp.doc(operationId="create_task")
    @blp.arguments(TaskSchema)
    @blp.response(201, TaskSchema)
    def post(self, data: dict[str, Any], project_id: str) -> tuple[Task, dict[str, str]]:
        """Add a task to a project (its members)

        Needs `tasks:write` and membership of the project, in any role: a project you can see but
        are not a member of is 403, one you cannot see is 404. You are recorded as `created_by`;
        emits `task.created`.
        """
        created = services.create_task(current_actor(), project_id, data)
        location = url_for("tasks.TaskById", project_id=project_id, task_id=created.id)
        return send_etag(created), {"Location": location}


@blp.route("/<string:project_id>/tasks/<string:task_id>")
class TaskById(MethodView):
    @blp.requires("tasks:read", optional=True)
    @blp.doc(operationId="get_task")
    @blp.response(200, TaskSchema)
    def get(self, project_id: str, task_id: str) -> Task:
        """Get a task

        Needs no token for a task of a public project (a token sent must carry `tasks:read`); in a
        private project only its members see it. A task you cannot see, or of another project, is
        404; the answer carries an `ETag` for `If-Match`.
        """
        return send_etag(services.get_task(current_actor(), project_id, task_id))

    @blp.requires("tasks:write")
    @blp.doc(operationId="update_task")
    @blp.arguments(TaskUpdateSchema)
    @blp.response(200, TaskSchema)
    def patch(self, changes: dict[str, Any], project_id: str, task_id: str) -> Task:
        """Change a task, or tick it off (its project's members; send If-Match)

        Needs `tasks:write`, membership of the project in any role, and `If-Match`; send only the
        fields to change, such as `{"done": true}` to tick it off. A real change emits
        `task.updated`.
        """
        found = services.get_task(current_actor(), project_id, task_id)
        require_if_match(found)
        return send_etag(services.update_task(current_actor(), found, changes))

    @blp.requires("tasks:write")
    @blp.doc(operationId="delete_task")
    @blp.response(204)
    def delete(self, project_id: str, task_id: str) -> None:
        """Delete a task (its project's members; send If-Match)

        Needs `tasks:write`, membership of the project in any role, and `If-Match`. Emits
        `task.deleted`.
        """
        found = services.get_task(current_actor(), project_id, task_id)
        require_if_match(found)
        services.delete_task(current_actor(), found)
