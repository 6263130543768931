"""Hook implementations of the tasks plugin, and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import EventHandler, Schedule, Scope, Task
from mars_tasks import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import EventType, PersonalData

MARS_PLUGIN = PluginInfo(
    name="tasks",
    version=__version__,
    requires=">=0.1,<0.2",
    description="Tasks of projects",
    # It asks mars_projects.api who may see and change a project.
    requires_plugins=["projects>=0.1"],
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
        Scope("tasks:read", "See the tasks of the projects you can see."),
        Scope("tasks:write", "Add, change and delete the tasks of your projects."),
    ]


@hookimpl
def mars_event_types() -> Sequence[EventType]:
    from mars_tasks.events import EVENT_TYPES

    return EVENT_TYPES


@hookimpl
def mars_event_handlers() -> Sequence[EventHandler]:
    from mars_tasks.services import remove_with_project

    return [EventHandler("tasks.remove_with_project", ("project.deleted",), remove_with_project)]


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_tasks.services import remove_orphans

    return [Task("tasks.remove_orphans", remove_orphans)]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [Schedule("tasks.daily_orphans", "tasks.remove_orphans", dt.timedelta(days=1))]


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_tasks.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_tasks.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_tasks.personal import erase

    return erase(user_id)
