"""The ``mars`` command: the operators' way into MARS."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, routes_command, shell_command

from mars_server import __version__
from mars_server.config import ConfigError
from mars_server.plugins import PluginError

if TYPE_CHECKING:
    from flask import Flask


def _load_app() -> Flask:
    from mars_server.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException("MARS cannot start: " + "; ".join(exc.problems)) from None
    except PluginError as exc:
        raise click.ClickException(f"MARS cannot start: {exc}") from None


class MarsGroup(FlaskGroup):
    """FlaskGroup that reports a broken configuration or plugin in one line, not a trace."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(click.Group.list_commands(self, ctx))
        try:
            names.update(ctx.ensure_object(ScriptInfo).load_app().cli.list_commands(ctx))
        except click.ClickException as exc:
            click.secho(f"Error: {exc.format_message()}\n", err=True, fg="red")
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = click.Group.get_command(self, ctx, name)
        if command is not None:
            return command
        app = ctx.ensure_object(ScriptInfo).load_app()
        if current_app and current_app._get_current_object() is app:  # type: ignore[attr-defined]
            return app.cli.get_command(ctx, name)
        ctx.with_resource(app.app_context())
        return app.cli.get_command(ctx, name)


cli = MarsGroup(name="mars", create_app=_load_app, add_default_commands=False,
                load_dotenv=False, set_debug_flag=False,
                help="Run and operate MARS. Settings come from MARS_* variables "
                     "(see docs/configuration.md).")
cli.add_command(shell_command)
cli.add_command(routes_command)


@cli.command("version", with_appcontext=False)
def version() -> None:
    """Print MARS's version."""
    click.echo(__version__)


@cli.command("check", with_appcontext=False)
def check() -> None:
    """Check configuration, plugins and database; print every problem."""
    from mars_server.app import create_app
    from mars_server.ops import health, migrations

    problems: list[str] = []
    try:
        app = create_app()
    except ConfigError as exc:
        problems.extend(exc.problems)
    except PluginError as exc:
        problems.append(str(exc))
    else:
        with app.app_context():
            try:
                health.check_database()
            except Exception as exc:
                problems.append(f"database: cannot connect ({type(exc).__name__})")
            else:
                if migrations.pending():
                    problems.append("database: not at head; run `mars db upgrade`")
    for problem in problems:
        click.secho(f"problem: {problem}", err=True, fg="red")
    if problems:
        sys.exit(1)
    click.echo(f"MARS {__version__}: configuration, plugins and database are fine.")


@cli.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the development server on the embedded defaults.

    MARS_ENV defaults to development here. A SQLite database is brought to head first.
    """
    from mars_server.ops import migrations

    os.environ.setdefault("MARS_ENV", "development")
    app = _load_app()
    with app.app_context():
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            migrations.upgrade()
        elif migrations.pending():
            click.secho("warning: the database is not at head; run `mars db upgrade`",
                        err=True, fg="yellow")
    base = f"http://{host}:{port}"
    click.echo(f"MARS {__version__} serving on {base}/api/v1 (database: "
               f"{app.config['SQLALCHEMY_DATABASE_URI'].split(':', 1)[0]})")
    click.echo(f"API docs: {base}/api/docs")
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True)


@cli.group("db")
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
@click.option("--plugin", "branch", default="core", show_default=True,
              help="The branch (plugin name) the revision belongs to.")
@click.option("--autogenerate/--empty", default=True, show_default=True)
def db_revision(message: str, branch: str, autogenerate: bool) -> None:
    """Write a new revision on a branch, from the difference between models and database."""
    import flask_migrate

    from mars_server.app import CORE_MIGRATIONS

    locations = {"core": str(CORE_MIGRATIONS / "versions")}
    for path in current_app.extensions["mars"].migrations_locations:
        plugin = _plugin_of(path)
        if plugin:
            locations[plugin] = path
    if branch not in locations:
        raise click.BadParameter(f"no migrations folder for {branch!r}", param_hint="--plugin")
    flask_migrate.revision(message=message, autogenerate=autogenerate,
                           head=f"{branch}@head", version_path=locations[branch])


def _plugin_of(path: str) -> str | None:
    from alembic.script import ScriptDirectory

    from mars_server.ops.migrations import alembic_config

    for script in ScriptDirectory.from_config(alembic_config()).walk_revisions():
        if script.path.startswith(path) and script.branch_labels:
            return next(iter(script.branch_labels))
    return None


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


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="mars")
