"""Operator commands every MARS has: ``mars db``, ``mars plugins`` and ``mars openapi``."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

plugins = AppGroup("plugins", help="Show the installed plugins.")
openapi = AppGroup("openapi", help="The OpenAPI document of this MARS and its plugins.")


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_plugins(as_json: bool) -> None:
    """List every installed plugin with its version, source and state."""
    from mars_server.ops.meta import plugin_rows

    rows = plugin_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {
        key: max(len(key), *(len(str(row[key])) for row in rows))
        for key in ("name", "version", "state", "source")
    }
    click.echo("  ".join(key.upper().ljust(width) for key, width in widths.items()))
    for row in rows:
        click.echo("  ".join(str(row[key]).ljust(width) for key, width in widths.items()))


def openapi_document() -> dict[str, Any]:
    api = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    return api.spec.to_dict()


@openapi.command("export")
@click.option(
    "--output",
    "-o",
    type=click.File("w"),
    default="-",
    help="Write to this file instead of standard output.",
)
def export(output: Any) -> None:
    """Write the OpenAPI 3.1 document (core and enabled plugins) as JSON."""
    json.dump(openapi_document(), output, indent=2, sort_keys=True)
    output.write("\n")


@click.group("db", cls=AppGroup)
def db_group() -> None:
    """Database migrations: the core's and every plugin's branch."""


@db_group.command("upgrade")
@click.argument("revision", default="heads")
def db_upgrade(revision: str) -> None:
    """Upgrade to REVISION (default: every head, core and plugins)."""
    from mars_server.ops import migrations

    migrations.upgrade(revision)
    click.echo(f"database at {', '.join(sorted(migrations.database_heads())) or 'base'}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade to REVISION (e.g. ``projects@base`` or ``-1``)."""
    import flask_migrate

    flask_migrate.downgrade(revision=revision)


@db_group.command("current")
def db_current() -> None:
    """Show the database's current revisions."""
    from mars_server.ops import migrations

    for head in sorted(migrations.database_heads()):
        click.echo(head)


@db_group.command("heads")
def db_heads() -> None:
    """Show the head revision of every branch."""
    from mars_server.ops import migrations

    for head in sorted(migrations.script_heads()):
        click.echo(head)


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@click.option(
    "--plugin",
    "branch",
    default="core",
    show_default=True,
    help="The branch (plugin name) the revision belongs to.",
)
@click.option("--autogenerate/--empty", default=True, show_default=True)
def db_revision(message: str, branch: str, autogenerate: bool) -> None:
    """Write a new revision on a branch, from the difference between models and database.

    A plugin's first revision starts its branch: labelled with the plugin's name, depending
    on the core's newest revision.
    """
    from alembic import command

    from mars_server.app import CORE_MIGRATIONS
    from mars_server.ops.migrations import alembic_config, script_directory

    locations = {"core": str(CORE_MIGRATIONS / "versions")}
    locations |= current_app.extensions["mars"].plugins.migrations_by_plugin()
    if branch not in locations:
        raise click.BadParameter(f"no migrations folder for {branch!r}", param_hint="--plugin")
    script = script_directory()
    branch_exists = any(branch in (rev.branch_labels or ()) for rev in script.walk_revisions())
    options: dict[str, Any] = {"head": f"{branch}@head"}
    if not branch_exists:
        options = {
            "head": "base",
            "branch_label": branch,
            "depends_on": script.get_revision("core@head").revision,
        }
    command.revision(
        alembic_config(),
        message=message,
        autogenerate=autogenerate,
        version_path=locations[branch],
        **options,
    )


@db_group.command("check")
def db_check() -> None:
    """Fail when the models and the migrations disagree."""
    import flask_migrate

    flask_migrate.check()


@db_group.command("purge-expired")
def db_purge_expired() -> None:
    """Delete expired idempotency keys."""
    from mars_server.http.idempotency import purge_expired

    click.echo(f"deleted {purge_expired()} expired idempotency keys")
