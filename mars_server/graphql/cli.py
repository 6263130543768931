"""``mars graphql export``: the GraphQL schema of this MARS and its enabled plugins, as SDL."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup

from mars_server.graphql.schema import sdl
from mars_server.state import mars_state

#: Where the first-party schema is committed (a test keeps it in step, like the SDK).
COMMITTED = "docs/schema.graphql"

graphql = AppGroup("graphql", help="The GraphQL schema of this MARS and its plugins.")


@graphql.command("export")
@click.option(
    "--output",
    "-o",
    type=click.File("w"),
    default="-",
    help=f"Write to this file instead of standard output (MARS's own: {COMMITTED}).",
)
def export(output: Any) -> None:
    """Write the GraphQL schema (core and enabled plugins) as SDL."""
    output.write(sdl(mars_state().graphql_schema))
