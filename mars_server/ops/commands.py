"""Operator commands every MARS has: ``mars plugins list`` and ``mars openapi export``."""

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
    widths = {key: max(len(key), *(len(str(row[key])) for row in rows))
              for key in ("name", "version", "state", "source")}
    click.echo("  ".join(key.upper().ljust(width) for key, width in widths.items()))
    for row in rows:
        click.echo("  ".join(str(row[key]).ljust(width) for key, width in widths.items()))


def openapi_document() -> dict[str, Any]:
    api = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    return api.spec.to_dict()  # type: ignore[no-any-return]


@openapi.command("export")
@click.option("--output", "-o", type=click.File("w"), default="-",
              help="Write to this file instead of standard output.")
def export(output: Any) -> None:
    """Write the OpenAPI 3.1 document (core and enabled plugins) as JSON."""
    json.dump(openapi_document(), output, indent=2, sort_keys=True)
    output.write("\n")
