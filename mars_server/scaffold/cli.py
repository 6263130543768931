"""``mars plugin new NAME``: write a working plugin to start from (docs/plugins.md)."""

from __future__ import annotations

from pathlib import Path

import click

from mars_server.scaffold import ScaffoldError, plugin_names, write_plugin

plugin = click.Group("plugin", help="Start a new plugin (see also: mars plugins).")


@plugin.command("new")
@click.argument("name")
@click.option(
    "--path",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write it to.  [default: plugins/NAME]",
)
@click.option(
    "--resource",
    help="The singular name of what it keeps (tasks: task), in events and operation ids.",
)
def new_command(name: str, folder: Path | None, resource: str | None) -> None:
    """Write the plugin NAME: its distribution, a resource with its API, events, commands,
    first migration and tests. Install it with pip install -e, then mars db upgrade."""
    folder = folder or Path("plugins", name)
    try:
        names = plugin_names(name, resource)
        written = write_plugin(names, folder)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote the plugin {name!r} ({names.distribution}), {len(written)} files, to {folder}"
    )
    click.echo("next:")
    click.echo(f"  pip install -e {folder}")
    click.echo("  mars db upgrade")
    click.echo(f"  pytest {folder}")
