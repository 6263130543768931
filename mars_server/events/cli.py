"""``mars worker``, ``mars relay`` and ``mars jobs``: running and repairing background work.

``mars jobs`` does what the admin API does, through the same services
(:mod:`mars_server.events.services`), which commit.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import AppGroup

from mars_server.events import services
from mars_server.events.models import JOB_STATUSES, Job
from mars_server.events.worker import Worker
from mars_server.http import Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

jobs_group = AppGroup("jobs", help="List, retry, run and purge background jobs.")


def _stop_on_signals(worker: Worker) -> None:
    def stop(signum: int, _frame: Any) -> None:
        click.echo(f"{signal.Signals(signum).name}: finishing the jobs in hand", err=True)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def metrics_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--metrics-port`` and ``--metrics-host``: serve the process's metrics to Prometheus."""
    command = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="The address the metrics server listens on (0.0.0.0: every interface).",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (no token: bind with care).",
    )(command)


def _serve_metrics(port: int | None, host: str, *, processes: bool = False) -> None:
    if port is None:
        return
    from mars_server.ops import metrics as ops_metrics

    if processes and not ops_metrics.multiprocess_mode():
        # The jobs run in Celery's pool processes: their values reach this server only
        # through prometheus_client's multiprocess files.
        raise click.UsageError(
            f"--metrics-port with the Celery backend needs {ops_metrics.MULTIPROC_ENV} set to "
            "an empty folder of this worker's own (docs/operations.md#metrics)"
        )
    try:
        ops_metrics.start_metrics_server(port, host)
    except OSError as error:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {error}") from None


@click.command("worker")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), help="Threads (or processes).")
@metrics_options
def worker_command(concurrency: int | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run background jobs until stopped (SIGTERM finishes the jobs in hand).

    Embedded backend: takes jobs from the database and relays events. Celery backend: a
    Celery worker; run `mars relay` too.
    """
    from mars_server.ops import migrations

    # A plugin uninstalled with its migrations applied: one line, as every command says it.
    migrations.check_revisions()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    celery = app.config["MARS"]["JOBS_BACKEND"] == "celery"
    _serve_metrics(metrics_port, metrics_host, processes=celery)
    if celery:
        from mars_server.events.celery import run_celery_worker

        run_celery_worker(app, concurrency)
        return
    worker = Worker(app, concurrency=concurrency)
    _stop_on_signals(worker)
    worker.run()


@click.command("relay")
@metrics_options
def relay_command(metrics_port: int | None, metrics_host: str) -> None:
    """(Celery backend) Relay events and hand due jobs to the broker until stopped."""
    from mars_server.ops import migrations

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["MARS"]["JOBS_BACKEND"] != "celery":
        raise click.ClickException(
            "`mars relay` is for MARS_JOBS_BACKEND=celery; run `mars worker`"
        )
    migrations.check_revisions()  # a plugin uninstalled with its migrations applied
    _serve_metrics(metrics_port, metrics_host)
    from mars_server.events.celery import relay_worker

    worker = relay_worker(app)
    _stop_on_signals(worker)
    worker.run()


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "task": job.task,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at.isoformat(),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "last_error": job.last_error,
    }


@jobs_group.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_jobs(status: str | None, task: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    for job in services.latest_jobs(status=status, task=task, limit=limit):
        if as_json:
            click.echo(json.dumps(_row(job)))
        else:
            error = (job.last_error or "").splitlines()[0][:80] if job.last_error else ""
            click.echo(
                f"{job.id}  {job.status:<9}  {job.attempts}/{job.max_attempts}  "
                f"{job.task:<24}  {job.created_at:%Y-%m-%d %H:%M:%S}  {error}".rstrip()
            )


@jobs_group.command("retry")
@click.argument("job_id", required=False)
@click.option("--all-dead", is_flag=True, help="Every dead job (of --task, if given).")
@click.option("--task", help="With --all-dead: only this task's jobs.")
def retry_jobs(job_id: str | None, all_dead: bool, task: str | None) -> None:
    """Queue a dead job (or every dead job) to run again now."""
    if bool(job_id) == all_dead:
        raise click.UsageError("give a JOB_ID or --all-dead")
    if job_id:
        try:
            jobs = [services.retry_job(job_id)]
        except NotFound:
            raise click.ClickException(f"no job {job_id!r}") from None
        except Conflict as error:
            raise click.ClickException(str(error.detail)) from None
    else:
        jobs = services.retry_dead_jobs(task=task)
    click.echo(f"{len(jobs)} job(s) queued again")


@jobs_group.command("purge")
@click.option("--dead", is_flag=True, help="Delete dead jobs (of --task, if given) too.")
@click.option("--task", help="With --dead: only this task's jobs.")
def purge_jobs(dead: bool, task: str | None) -> None:
    """Delete finished jobs and dispatched events past their retention."""
    counts = services.purge_jobs(dead=dead, task=task)
    click.echo(", ".join(f"{count} {what}" for what, count in counts.items()) + " deleted")


@jobs_group.command("run")
@click.option("--max-seconds", type=float, default=60.0, show_default=True)
def run_jobs(max_seconds: float) -> None:
    """Relay events and run every due job now, in this process, then exit."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ran = Worker(app).run_until_idle(max_seconds=max_seconds)
    click.echo(f"{ran} job(s) run")
