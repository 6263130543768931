"""``/api/v1/jobs``: the background jobs, for admins."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask.views import MethodView

from mars_server.db import db
from mars_server.events import maintenance
from mars_server.events.models import Job
from mars_server.events.schemas import JobPageSchema, JobQueryArgsSchema, JobSchema
from mars_server.http import Blueprint, Conflict, NotFound, paginate, send_page

blp = Blueprint(
    "jobs", __name__, url_prefix="/jobs", description="Background jobs (admins): see and replay."
)


def _job(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job {job_id!r}.")
    return job


@blp.route("")
class Jobs(MethodView):
    @blp.requires("jobs:read", permission="jobs:manage")
    @blp.doc(operationId="list_jobs")
    @blp.arguments(JobQueryArgsSchema, location="query", as_kwargs=False)
    @blp.response(200, JobPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List background jobs, oldest first; filter by status and task"""
        stmt = sa.select(Job)
        if args.get("status"):
            stmt = stmt.where(Job.status == args["status"])
        if args.get("task"):
            stmt = stmt.where(Job.task == args["task"])
        return send_page(paginate(stmt, Job.id, args, name="jobs"))


@blp.route("/<string:job_id>")
class JobById(MethodView):
    @blp.requires("jobs:read", permission="jobs:manage")
    @blp.doc(operationId="get_job")
    @blp.response(200, JobSchema)
    def get(self, job_id: str) -> Job:
        """Get a background job, with its last error"""
        return _job(job_id)


@blp.route("/<string:job_id>/retry")
class JobRetry(MethodView):
    @blp.requires("jobs:write", permission="jobs:manage")
    @blp.doc(operationId="retry_job")
    @blp.response(200, JobSchema)
    def post(self, job_id: str) -> Job:
        """Run a dead job again now, with a fresh count of attempts"""
        job = _job(job_id)
        try:
            maintenance.retry(job)
        except ValueError as error:
            raise Conflict(str(error)) from None
        db.session.commit()
        return job
