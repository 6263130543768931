"""Hook implementations of the tasks plugin, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import Scope
from mars_tasks import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import EventType

MARS_PLUGIN = PluginInfo(
    name="tasks",
    version=__version__,
    requires=">=0.1,<0.2",
    description="Tasks people keep",
    # The plugins this one builds on, e.g. ["projects>=0.1"] (docs/plugins.md).
    requires_plugins=[],
)


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_tasks.views import blp

    return [blp]


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_tasks.cli import commands

    return [commands]


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("tasks:read", "See your tasks."),
        Scope("tasks:write", "Create, change and delete your tasks."),
    ]


@hookimpl
def mars_event_types() -> Sequence[EventType]:
    from mars_tasks.events import EVENT_TYPES

    return EVENT_TYPES
