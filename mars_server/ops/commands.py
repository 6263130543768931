"""Operator commands every MARS has: ``mars db``, ``mars plugins`` and ``mars openapi``."""

from __future__ import annotations

import json
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from mars_server.plugins import broken_plugins_kept, builtin_names


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
    for row, plugin in zip(rows, current_app.extensions["mars"].plugins.loaded, strict=True):
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

    Installed (enabled or disabled): its migrations go down to base, dropping its tables, and
    its event types leave webhook endpoints and notification preferences. Uninstalled: its
    revisions are forgotten and its ``NAME.*`` event types removed; its tables are listed.
    """
    from mars_server.db import db
    from mars_server.events import audit
    from mars_server.ops import migrations

    loaded = current_app.extensions["mars"].plugins.loaded
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
        declared = current_app.extensions["mars"].plugins.event_types_of(name)
    else:
        revisions = migrations.stray_revisions().get(name, [])
        declared = []
    leftovers = _EventTypes(name, declared)
    if not installed and not revisions and not leftovers.in_use():
        raise click.ClickException(
            f"no plugin {name!r} is installed, and the database holds nothing of it"
        )
    if not yes:
        what = (
            f"downgrade {', '.join(revisions)} to base, dropping its tables and their data"
            if installed and revisions
            else f"forget its revisions {', '.join(revisions)}"
            if revisions
            else "(no migrations of it are applied)"
        )
        click.confirm(
            f"Purge plugin {name!r}: {what}; remove its event types from webhook endpoints "
            "and notification preferences?",
            abort=True,
        )
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
        click.echo(f"forgot its revisions in alembic_version: {', '.join(revisions)}")
    removed = leftovers.remove()
    audit("plugins.purged", target=name, installed=installed, revisions=revisions, **removed)
    db.session.commit()
    click.echo(
        f"removed event types {', '.join(removed['event_types']) or '(none)'}: from "
        f"{len(removed['endpoints_changed'])} webhook endpoints, "
        f"{removed['preferences_deleted']} notification preferences"
    )
    if removed["endpoints_deleted"]:
        click.echo(
            "deleted the webhook endpoints left with no event type, with their delivery logs: "
            + ", ".join(removed["endpoints_deleted"])
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


class _EventTypes:
    """The event types of plugin ``name`` in the webhooks' and notifications' tables: those
    it declares and ``name.*``. The builtins own the tables; the core reaches them only by
    name (it never imports a builtin plugin)."""

    def __init__(self, name: str, declared: list[str]) -> None:
        from mars_server.db import db

        self.prefix = f"{name}."
        self.declared = declared
        self.tables = db.metadata.tables

    def _matches(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.or_(column.in_(self.declared), column.startswith(self.prefix, autoescape=True))

    def in_use(self) -> bool:
        from mars_server.db import db

        return any(
            db.session.execute(
                sa.select(sa.literal(1)).where(self._matches(table.c.event_type)).limit(1)
            ).first()
            for name in ("webhook_subscriptions", "notification_preferences")
            if (table := self.tables.get(name)) is not None
        )

    def remove(self) -> dict[str, Any]:
        """Take them off webhook endpoints (an endpoint left with none is deleted, with its
        delivery log) and delete the notification preferences for them, in the session's
        transaction; return what went."""
        from mars_server.db import db, utcnow

        session = db.session
        found: set[str] = set()
        changed: list[str] = []
        deleted: list[str] = []
        subscriptions = self.tables.get("webhook_subscriptions")
        endpoints = self.tables.get("webhook_endpoints")
        if subscriptions is not None and endpoints is not None:
            rows = session.execute(
                sa.select(subscriptions.c.endpoint_id, subscriptions.c.event_type).where(
                    self._matches(subscriptions.c.event_type)
                )
            ).all()
            found |= {row.event_type for row in rows}
            touched = sorted({row.endpoint_id for row in rows})
            if touched:
                session.execute(
                    sa.delete(subscriptions).where(self._matches(subscriptions.c.event_type))
                )
                kept = set(
                    session.scalars(
                        sa.select(subscriptions.c.endpoint_id)
                        .where(subscriptions.c.endpoint_id.in_(touched))
                        .distinct()
                    )
                )
                changed = [endpoint for endpoint in touched if endpoint in kept]
                deleted = [endpoint for endpoint in touched if endpoint not in kept]
            if changed:
                session.execute(
                    sa.update(endpoints)
                    .where(endpoints.c.id.in_(changed))
                    .values(version=endpoints.c.version + 1, updated_at=utcnow())
                )
            if deleted:
                session.execute(sa.delete(endpoints).where(endpoints.c.id.in_(deleted)))
        preferences = self.tables.get("notification_preferences")
        count = 0
        if preferences is not None:
            types = session.scalars(
                sa.select(preferences.c.event_type).where(self._matches(preferences.c.event_type))
            ).all()
            found |= set(types)
            count = len(types)
            if types:
                session.execute(
                    sa.delete(preferences).where(self._matches(preferences.c.event_type))
                )
        return {
            "event_types": sorted(found),
            "endpoints_changed": changed,
            "endpoints_deleted": deleted,
            "preferences_deleted": count,
        }


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

    from mars_server.ops import migrations

    migrations.check_revisions()
    flask_migrate.check()


@db_group.command("purge-expired")
def db_purge_expired() -> None:
    """Delete expired idempotency keys."""
    from mars_server.http.idempotency import purge_expired

    click.echo(f"deleted {purge_expired()} expired idempotency keys")
