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
from mars_server.http.spec import SpecError
from mars_server.plugins import PluginError

if TYPE_CHECKING:
    from flask import Flask


def _load_app() -> Flask:
    from mars_server.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException("MARS cannot start: " + "; ".join(exc.problems)) from None
    except (PluginError, SpecError) as exc:
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


cli = MarsGroup(
    name="mars",
    create_app=_load_app,
    add_default_commands=False,
    load_dotenv=False,
    set_debug_flag=False,
    help="Run and operate MARS. Settings come from MARS_* variables (see docs/configuration.md).",
)
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
    except (PluginError, SpecError) as exc:
        problems.append(str(exc))
    else:
        with app.app_context():
            try:
                health.check_database()
            except Exception as exc:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
                problems.append(f"database: cannot connect ({type(exc).__name__}: {reason})")
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
            click.secho(
                "warning: the database is not at head; run `mars db upgrade`", err=True, fg="yellow"
            )
    base = f"http://{host}:{port}"
    click.echo(
        f"MARS {__version__} serving on {base}/api/v1 (database: "
        f"{app.config['SQLALCHEMY_DATABASE_URI'].split(':', 1)[0]})"
    )
    click.echo(f"API docs: {base}/api/docs")
    worker = _background_worker(app)
    from werkzeug.serving import run_simple

    try:
        run_simple(host, port, app, threaded=True)
    finally:
        if worker is not None:
            worker.stop()


def _background_worker(app: Any) -> Any:
    """The worker ``mars serve`` runs beside the server: the embedded one, or the Celery relay."""
    settings = app.config["MARS"]
    if not settings["SERVE_WITH_WORKER"]:
        click.echo("Background jobs: not run here (MARS_SERVE_WITH_WORKER=false)")
        return None
    if settings["JOBS_BACKEND"] == "celery":
        from mars_server.events.celery import relay_worker

        worker = relay_worker(app)
        click.echo("Background jobs: relayed to Celery; run `mars worker` for the workers")
    else:
        from mars_server.events.worker import Worker

        worker = Worker(app)
        click.echo(f"Background jobs: embedded worker, {worker.concurrency} threads")
    worker.start_in_thread()
    return worker


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="mars")
