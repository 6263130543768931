"""``mars tasks``: operators' view of tasks."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from mars_tasks import services

commands = AppGroup("tasks", help="Inspect and fix tasks.")


@commands.command("list")
@click.option("--project", "project_id", help="Only those of this project (prj_...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_command(project_id: str | None, limit: int) -> None:
    """List tasks: id, project, done or not, name."""
    import sqlalchemy as sa

    from mars_server.db import db
    from mars_tasks.models import Task

    stmt = sa.select(Task).order_by(Task.id).limit(limit)
    if project_id:
        stmt = stmt.where(Task.project_id == project_id)
    for row in db.session.scalars(stmt):
        click.echo(f"{row.id}  {row.project_id}  {'done' if row.done else 'to do'}  {row.name}")
    click.echo(f"{services.count_tasks()} tasks in all", err=True)


@commands.command("delete")
@click.argument("task_id")
def delete_command(task_id: str) -> None:
    """Delete a task by id (an operator's override)."""
    from mars_server.db import db
    from mars_tasks.models import Task

    found = db.session.get(Task, task_id)
    if found is None:
        raise click.ClickException(f"no task {task_id!r}")
    services.delete_task(None, found)
    click.echo(f"deleted {task_id}")
