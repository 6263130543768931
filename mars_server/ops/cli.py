"""The ``mars`` command: the operators' way into MARS.

Commands are found without building the app (the plugins alone say which there are), so
``mars --help`` and every command's ``--help`` work whatever the settings. The app is built
when a command runs; the few that reach no production service (:data:`WITHOUT_PRODUCTION`)
run on a throwaway development configuration when the production settings are missing.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import marshmallow as ma
from flask.cli import FlaskGroup, routes_command, shell_command
from flask_migrate.cli import db as alembic_commands

from mars_server import __version__
from mars_server import config as settings_sources
from mars_server.config import ConfigError
from mars_server.http.spec import SpecError
from mars_server.plugins import PluginError, broken_plugins_kept, build_plugin_manager
from mars_server.scaffold.cli import plugin as plugin_scaffold
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from flask import Flask

#: The command needs the app's code only: its plugins, routes and schemas.
NO_DATABASE = "no database"
#: The command compares the models with a database at head: a scratch SQLite one here.
SCRATCH_DATABASE = "a scratch SQLite database, brought to head"
#: Commands that reach no production service, by path, and the database they use without
#: the production settings. They then run on a throwaway development configuration: a random
#: secret key, a temporary instance folder, mails to files, no Redis, no Celery, and never
#: the database the environment names (docs/operations.md).
WITHOUT_PRODUCTION: dict[tuple[str, ...], str] = {
    ("plugins", "list"): NO_DATABASE,
    ("openapi", "export"): NO_DATABASE,
    ("graphql", "export"): NO_DATABASE,
    ("sdk", "generate"): NO_DATABASE,
    ("db", "revision"): SCRATCH_DATABASE,
}
DEVELOPMENT_HINT = "to run in development instead, set MARS_ENV=development"
# Keys of click's ``Context.meta``, which every context of one invocation shares.
_PLUGIN_COMMANDS = "mars.plugin_commands"
_HELP_ONLY = "mars.help_only"
_INVOKED = "mars.invoked"


def _setting_names(problems: list[str]) -> str:
    return ", ".join(sorted({problem.split(":", 1)[0] for problem in problems}))


def _cannot_start(problems: list[str], missing: Collection[str] = ()) -> click.ClickException:
    """Every problem in one line; then, if some are settings only production requires, how
    to run in development instead."""
    hint = [DEVELOPMENT_HINT] if any(problem in missing for problem in problems) else []
    return click.ClickException("MARS cannot start: " + "; ".join([*problems, *hint]))


def _missing_for_production() -> list[str]:
    """The problems of the core settings that only production has: the settings it requires
    (``MARS_SECRET_KEY``, ``MARS_PUBLIC_URL``...). Empty outside production."""
    as_is = settings_sources.gather()
    if as_is.core.get("ENV", "production") != "production":
        return []
    # A placeholder key: without one, development would write a key into the instance folder.
    relaxed = settings_sources.gather(
        {"ENV": "development", "SECRET_KEY": "x" * settings_sources.MIN_SECRET_KEY_LENGTH}
    )
    for raw in (as_is, relaxed):
        settings_sources.validate_core(raw, tempfile.gettempdir())
    return [problem for problem in as_is.problems if problem not in relaxed.problems]


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _throwaway_app(ctx: click.Context, database: str, missing: list[str]) -> Flask:
    """A development MARS in a temporary folder, removed when the command ends."""
    from mars_server.app import create_app

    folder = ctx.with_resource(
        tempfile.TemporaryDirectory(prefix="mars-", ignore_cleanup_errors=True)
    )
    try:
        app = create_app(
            {
                "ENV": "development",
                "SECRET_KEY": secrets.token_urlsafe(48),
                "INSTANCE_PATH": folder,
                "DATABASE_URL": f"sqlite:///{Path(folder, 'scratch.db')}",
                "MAIL_BACKEND": "files",
                "REDIS_URL": None,
                "JOBS_BACKEND": "embedded",
            }
        )
    except ConfigError as exc:  # a bad setting that development has too
        raise _cannot_start(exc.problems) from None
    except (PluginError, SpecError) as exc:
        raise click.ClickException(f"MARS cannot start: {exc}") from None
    if database == SCRATCH_DATABASE:
        from mars_server.ops import migrations

        with app.app_context(), _quiet("alembic"):
            migrations.upgrade()
    if not ctx.meta.get(_HELP_ONLY):
        click.echo(
            f"note: no production settings ({_setting_names(missing)}): running on a "
            f"throwaway development configuration, with {database}",
            err=True,
        )
    return app


def _load_app() -> Flask:
    """Build the app of the command being run: ``ScriptInfo.load_app`` calls it, once."""
    from mars_server.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        problems = exc.problems
    except (PluginError, SpecError) as exc:
        raise click.ClickException(f"MARS cannot start: {exc}") from None
    missing = _missing_for_production()
    ctx = click.get_current_context(silent=True)
    if ctx is not None and missing:
        # A group's callback (`mars alembic`) runs before its subcommand reads `--help`;
        # a command's own callback runs the command.
        helping = ctx.meta.get(_HELP_ONLY) and isinstance(ctx.command, click.Group)
        database = WITHOUT_PRODUCTION.get(ctx.meta.get(_INVOKED, ()))
        if database is None and helping:
            database = NO_DATABASE
        if database is not None:
            return _throwaway_app(ctx, database, missing)
    raise _cannot_start(problems, missing)


def _disabled_plugins() -> list[str]:
    """``MARS_PLUGINS_DISABLED`` as ``create_app`` reads it; a bad value counts as none
    (building the app reports it)."""
    given = settings_sources.gather().core
    schema = settings_sources.CoreSettingsSchema(only=("PLUGINS_DISABLED",))
    try:
        loaded = schema.load({k: v for k, v in given.items() if k == "PLUGINS_DISABLED"})
    except ma.ValidationError:
        return []
    return list(loaded["PLUGINS_DISABLED"])


def _plugin_commands(ctx: click.Context) -> dict[str, click.Command]:
    """The commands of the plugins (the core's areas included), found once per invocation
    from the plugins alone, the way ``create_app`` adds them to ``app.cli``. A plugin that
    cannot load adds none; building the app for a command says why."""
    commands: dict[str, click.Command] | None = ctx.meta.get(_PLUGIN_COMMANDS)
    if commands is None:
        from mars_server.app import _in_app_context

        try:
            with broken_plugins_kept():
                plugins = build_plugin_manager(_disabled_plugins())
        except PluginError as exc:
            raise click.ClickException(f"MARS cannot start: {exc}") from None
        commands = {c.name: _in_app_context(c) for c in plugins.cli_commands() if c.name}
        ctx.meta[_PLUGIN_COMMANDS] = commands
    return commands


class MarsGroup(FlaskGroup):
    """FlaskGroup that finds commands without building the app, and reports a broken
    configuration or plugin in one line, not a trace."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Whether this invocation only shows a help: see _load_app.
        options = args[: args.index("--")] if "--" in args else args
        ctx.meta[_HELP_ONLY] = any(arg in ctx.help_option_names for arg in options)
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # The path of the command about to run, for the app loader: `plugins list` loads the
        # app in its group, before click knows the subcommand.
        name, command, rest = super().resolve_command(ctx, args)
        subcommand = rest[:1] if isinstance(command, click.Group) else []
        ctx.meta[_INVOKED] = (name, *(arg for arg in subcommand if not arg.startswith("-")))
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(click.Group.list_commands(self, ctx))
        try:
            names.update(_plugin_commands(ctx))
        except click.ClickException as exc:
            click.secho(f"Error: {exc.format_message()}\n", err=True, fg="red")
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = click.Group.get_command(self, ctx, name)
        return command if command is not None else _plugin_commands(ctx).get(name)


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
# Flask-Migrate's own commands (stamp, merge, show): `mars db` is MARS's, upgrading every branch.
cli.add_command(alembic_commands, "alembic")
# Writes files only: no app, no settings.
cli.add_command(plugin_scaffold)


@cli.command("version", with_appcontext=False)
def version() -> None:
    """Print MARS's version."""
    click.echo(__version__)


@cli.command("check", with_appcontext=False)
def check() -> None:
    """Check configuration, plugins and database; print every problem, one line each."""
    from mars_server import privacy
    from mars_server.app import create_app
    from mars_server.ops import health, keys, migrations
    from mars_server.plugins import broken_plugins_kept

    def reason(exc: BaseException) -> str:
        text = str(getattr(exc, "orig", exc)).strip().splitlines() or [""]
        return f"{type(exc).__name__}: {text[0][:200]}"

    problems: list[str] = []
    try:
        with broken_plugins_kept():  # a plugin that cannot load is a problem to list
            app = create_app()
    except ConfigError as exc:
        problems.extend(exc.problems)
    except (PluginError, SpecError) as exc:
        problems.append(str(exc))
    except Exception as exc:
        problems.append(f"MARS cannot start: {reason(exc)}")
    else:
        plugins = mars_state(app).plugins
        for plugin in plugins.loaded:
            if plugin.state == "broken":
                problems.append(plugin.problem)
            elif plugin.state == "disabled":
                note = f": it cannot load ({plugin.problem})" if plugin.problem else ""
                click.echo(f"note: plugin {plugin.info.name!r} is disabled{note}")
        for warning in plugins.warnings:
            click.secho(f"warning: {warning}", err=True, fg="yellow")
        with app.app_context():
            try:
                health.check_database()
            except Exception as exc:
                problems.append(f"database: cannot connect ({reason(exc)})")
            else:
                try:
                    pending = migrations.pending()
                except migrations.UnknownRevisions as exc:
                    problems.extend(exc.problems)
                except Exception as exc:
                    problems.append(f"database: cannot read its migrations ({reason(exc)})")
                else:
                    if pending:
                        problems.append("database: not at head; run `mars db upgrade`")
                    else:
                        for warning in [*keys.warnings(), *privacy.missing_hooks(plugins)]:
                            click.secho(f"warning: {warning}", err=True, fg="yellow")
    for problem in problems:
        click.secho(f"problem: {problem}", err=True, fg="red")
    if problems:
        if any(problem in problems for problem in _missing_for_production()):
            click.echo(f"hint: production needs these settings; {DEVELOPMENT_HINT}", err=True)
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
    click.echo(f"GraphQL: {base}/api/v1/graphql (GraphiQL: {base}/api/graphql)")
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
