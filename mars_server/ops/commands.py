"""Operator commands every MARS has: ``mars db``, ``mars plugins`` and ``mars openapi``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from mars_server.plugins import PluginError, broken_plugins_kept, builtin_names
from mars_server.state import mars_state

if TYPE_CHECKING:
    from mars_server.plugins import MarsPlugins


class PluginsGroup(AppGroup):
    """``mars plugins``: runs even when a plugin cannot load, to show it (listed as broken)."""

    def invoke(self, ctx: click.Context) -> Any:
        if not current_app:
            with broken_plugins_kept():
                app = ctx.ensure_object(ScriptInfo).load_app()
            ctx.with_resource(app.app_context())
        return super().invoke(ctx)


plugins = PluginsGroup("plugins", help="Show the installed plugins; purge an uninstalled one.")
openapi = AppGroup("openapi", help="The OpenAPI document of this MARS and its plugins.")


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_plugins(as_json: bool) -> None:
    """List every installed plugin with its version, source and state."""
    from mars_server.ops.meta import plugin_rows

    rows = plugin_rows()
    for row, plugin in zip(rows, mars_state().plugins.loaded, strict=True):
        if plugin.problem:
            row["problem"] = plugin.problem
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if "problem" in row:
            row["state"] = f"{row['state']}: {row['problem']}"
    widths = {
        key: max(len(key), *(len(str(row[key])) for row in rows))
        for key in ("name", "version", "state", "source")
    }
    click.echo("  ".join(key.upper().ljust(width) for key, width in widths.items()))
    for row in rows:
        click.echo("  ".join(str(row[key]).ljust(width) for key, width in widths.items()).rstrip())


@plugins.command("purge")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_plugin(name: str, yes: bool) -> None:
    """Remove what plugin NAME keeps in the database; the audit log stays.

    Installed (enabled or disabled): its migrations go down to base, dropping its tables.
    Uninstalled: its revisions are forgotten; its tables are listed. Either way, every
    enabled plugin removes what it keeps of NAME's event types (webhook subscriptions,
    notification preferences): those it declares, and any ``NAME.*``.
    """
    from mars_server.db import db
    from mars_server.events import audit
    from mars_server.ops import migrations

    hooks = mars_state().plugins
    loaded = hooks.loaded
    plugin = next((p for p in loaded if p.info.name == name), None)
    if name in builtin_names() | {"core"} or (plugin is not None and plugin.info.required):
        raise click.ClickException(f"plugin {name!r} is builtin: it cannot be purged")
    if plugin is not None and plugin.problem:
        raise click.ClickException(
            f"plugin {name!r} is installed but cannot load ({plugin.problem}): "
            "fix it, or uninstall it and purge it then"
        )
    installed = plugin is not None
    if installed:
        migrations.check_revisions()  # Alembic must know every revision to go down
        revisions = migrations.branch_revisions(name)
        declared = hooks.event_types_of(name)
    else:
        revisions = migrations.stray_revisions().get(name, [])
        declared = []
    not_asked = hooks.not_purging(name)
    planned: dict[str, list[str]] = {}
    if not yes or not (installed or revisions):
        planned = _ask_plugins(hooks, name, declared, dry_run=True, downgraded=False)
        db.session.rollback()  # it only read: hold no transaction open across the downgrade
        if not (installed or revisions or planned):
            unknown = f"no plugin {name!r} is installed, and the database holds nothing of it"
            if not_asked:
                unknown += f" that the enabled plugins know of ({', '.join(not_asked)}: disabled)"
            raise click.ClickException(unknown)
    if not yes:
        click.echo(f"Purge plugin {name!r}:")
        click.echo(
            f"  downgrade {', '.join(revisions)} to base, dropping its tables and their data"
            if installed and revisions
            else f"  forget its revisions {', '.join(revisions)}"
            if revisions
            else "  no migration of it is applied: nothing to downgrade"
        )
        for asked, lines in planned.items():
            for line in lines:
                click.echo(f"  {asked}: remove {line}")
        if not_asked:
            click.echo(f"  not asked, as they are disabled: {', '.join(not_asked)}")
        click.confirm("Go on?", abort=True)
    tables = [] if installed else migrations.undeclared_tables()
    if installed and revisions:
        try:
            migrations.downgrade_branch(name)
        except Exception as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines() or [""]
            raise click.ClickException(
                f"cannot downgrade {name} to base, nothing else was removed: "
                f"{type(exc).__name__}: {reason[0][:300]}"
            ) from None
        click.echo(f"downgraded {name} to base from {', '.join(revisions)}: its tables are dropped")
    elif revisions:
        migrations.forget_revisions(name)
    removed = _ask_plugins(
        hooks, name, declared, dry_run=False, downgraded=bool(installed and revisions)
    )
    audit(
        "plugins.purged",
        target=name,
        installed=installed,
        revisions=revisions,
        removed=removed,
        not_purged_by=not_asked,
    )
    db.session.commit()
    if revisions and not installed:
        click.echo(f"forgot its revisions in alembic_version: {', '.join(revisions)}")
    for asked, lines in removed.items():
        for line in lines:
            click.echo(f"{asked}: removed {line}")
    if not removed:
        click.echo("no enabled plugin kept anything of its event types")
    if not_asked:
        click.echo(
            f"not purged by {', '.join(not_asked)}: disabled, so not asked; what they keep of "
            f"{name!r} stays until they are enabled and `mars plugins purge {name}` runs again"
        )
    click.echo(f"plugin {name!r} purged; the audit log is kept")
    if installed:
        click.echo(
            "now uninstall (or disable) it: while it is enabled, `mars db upgrade` creates "
            "its tables again"
        )
    elif tables:
        click.echo(
            "tables that no installed code declares remain, the plugin's among them (MARS "
            f"cannot tell which): {', '.join(tables)}; after a backup, drop its own with "
            "DROP TABLE <name>;"
        )


def _ask_plugins(
    hooks: MarsPlugins, name: str, declared: list[str], *, dry_run: bool, downgraded: bool
) -> dict[str, list[str]]:
    """The ``mars_plugin_purged`` hook's lines by plugin; a failing plugin in one line."""
    from mars_server.db import db

    try:
        return hooks.plugin_purged(name, declared, dry_run=dry_run)
    except PluginError as exc:
        db.session.rollback()
        done = "its tables are dropped, " if downgraded else ""
        raise click.ClickException(
            f"{exc}; {done}nothing else was removed: run `mars plugins purge {name}` again "
            "once that is fixed"
        ) from None


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

    from mars_server.ops import migrations

    migrations.check_revisions()
    flask_migrate.downgrade(revision=revision)


@db_group.command("current")
def db_current() -> None:
    """Show the database's current revisions."""
    from mars_server.ops import migrations

    migrations.check_revisions()
    for head in sorted(migrations.database_heads()):
        click.echo(head)


@db_group.command("heads")
def db_heads() -> None:
    """Show the head revision of every branch."""
    from mars_server.ops import migrations

    migrations.check_revisions()
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
    locations |= mars_state().plugins.migrations_by_plugin()
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

    from mars_server.ops import migrations

    migrations.check_revisions()
    flask_migrate.check()


@db_group.command("purge-expired")
def db_purge_expired() -> None:
    """Delete expired idempotency keys."""
    from mars_server.http.idempotency import purge_expired

    click.echo(f"deleted {purge_expired()} expired idempotency keys")
