"""``/api/v1/jobs``: the background jobs, for admins (:mod:`mars_server.events.services`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.views import MethodView

from mars_server.events import services
from mars_server.events.schemas import JobPageSchema, JobQueryArgsSchema, JobSchema
from mars_server.http import Blueprint, send_page

if TYPE_CHECKING:
    from mars_server.events.models import Job

blp = Blueprint(
    "jobs", __name__, url_prefix="/jobs", description="Background jobs (admins): see and replay."
)


@blp.route("")
class Jobs(MethodView):
    @blp.requires("jobs:read", permission="jobs:manage")
    @blp.doc(operationId="list_jobs")
    @blp.arguments(JobQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, JobPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List background jobs, oldest first; filter by status and task

        Needs `jobs:read` and the admin role. Returns a page of jobs: filter with `status`
        (`queued`, `running`, `succeeded` or `dead`) and `task`, and follow `next_cursor` or the
        `Link` header for the next page.
        """
        return send_page(services.list_jobs(args))


@blp.route("/<string:job_id>")
class JobById(MethodView):
    @blp.requires("jobs:read", permission="jobs:manage")
    @blp.doc(operationId="get_job")
    @blp.response(200, JobSchema)
    def get(self, job_id: str) -> Job:
        """Get a background job, with its last error

        Needs `jobs:read` and the admin role. Returns the job's `task`, `status`, `attempts` out of
        `max_attempts`, when it is due (`run_at`) and `last_error`; an unknown id is 404.
        """
        return services.get_job(job_id)


@blp.route("/<string:job_id>/retry")
class JobRetry(MethodView):
    @blp.requires("jobs:write", permission="jobs:manage")
    @blp.doc(operationId="retry_job")
    @blp.response(200, JobSchema)
    def post(self, job_id: str) -> Job:
        """Run a dead job again now, with a fresh count of attempts

        Needs `jobs:write` and the admin role. A dead or still queued job is queued to run now with
        `attempts` back at 0, and returned; a running or succeeded job is 409. Each retry is
        recorded in the audit log.
        """
        return services.retry_job(job_id)
