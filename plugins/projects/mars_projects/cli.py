"""``mars projects``: operators' view of projects."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from mars_projects import services

projects = AppGroup("projects", help="Inspect and fix projects.")


@projects.command("list")
@click.option("--visibility", type=click.Choice(["public", "private"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_command(visibility: str | None, limit: int) -> None:
    """List projects: id, slug, visibility, name."""
    import sqlalchemy as sa

    from mars_projects.models import Project
    from mars_server.db import db

    stmt = sa.select(Project).order_by(Project.id).limit(limit)
    if visibility:
        stmt = stmt.where(Project.visibility == visibility)
    for project in db.session.scalars(stmt):
        click.echo(f"{project.id}  {project.slug}  {project.visibility}  {project.name}")
    click.echo(f"{services.count_projects()} projects in all", err=True)


@projects.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--owner", "owner_id", required=True, help="The owning user's id (usr_...).")
@click.option(
    "--visibility", type=click.Choice(["public", "private"]), default="private", show_default=True
)
def create_command(slug: str, name: str, owner_id: str, visibility: str) -> None:
    """Create a project owned by --owner; prints its id."""
    from mars_server.http import Conflict, user_info

    if user_info(owner_id) is None:
        raise click.ClickException(f"no user {owner_id!r}")
    try:
        project = services.create_project(
            owner_id, {"slug": slug, "name": name, "visibility": visibility, "description": ""}
        )
    except Conflict as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(project.id)


@projects.command("delete")
@click.argument("project_id")
def delete_command(project_id: str) -> None:
    """Delete a project by id."""
    from mars_server.http import NotFound

    try:
        from mars_projects.models import Project
        from mars_server.db import db

        project = db.session.get(Project, project_id)
        if project is None:
            raise NotFound(f"No project {project_id!r}.")
        services.delete_project(None, project)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"deleted {project_id}")
