"""``mars privacy inventory|check`` (docs/privacy.md)."""

from __future__ import annotations

from typing import TextIO

import click
from flask.cli import AppGroup

from mars_server import privacy
from mars_server.state import mars_state

privacy_group = AppGroup("privacy", help="The personal data MARS and its plugins store.")


@privacy_group.command("inventory")
@click.option("--out", type=click.File("w"), default="-", help="Write here (default: stdout).")
def inventory_command(out: TextIO) -> None:
    """Print the records of processing: what personal data each enabled plugin stores, why,
    for how long and what erasure does to it (Markdown)."""
    out.write(privacy.inventory_markdown(mars_state().plugins.personal_data_inventory()))


@privacy_group.command("check")
def check_command() -> None:
    """Fail when a plugin stores users' ids but does not export and erase them."""
    problems = privacy.missing_hooks(mars_state().plugins)
    for problem in problems:
        click.secho(f"problem: {problem}", err=True, fg="red")
    if problems:
        raise SystemExit(1)
    click.echo("every plugin that stores users' ids exports and erases them")
