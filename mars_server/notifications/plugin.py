"""Hook implementations of the builtin ``notifications`` plugin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import EventHandler, GraphQLPart, Schedule, Scope, Task
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    import marshmallow as ma
    from flask import Flask
    from flask_smorest import Blueprint

    from mars_server.hookspecs import PersonalData

MARS_PLUGIN = PluginInfo(
    name="notifications",
    version=__version__,
    requires=f"=={__version__}",
    description="In-app and e-mail notifications, per-user preferences",
)

HERE = Path(__file__).parent


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.notifications.views import blp

    return [blp]


@hookimpl
def mars_graphql() -> GraphQLPart:
    from mars_server.notifications.graphql import PART

    return PART


@hookimpl
def mars_migrations_location() -> str:
    return str(HERE / "migrations" / "versions")


@hookimpl
def mars_settings_schema() -> type[ma.Schema]:
    from mars_server.notifications.schemas import NotificationsSettingsSchema

    return NotificationsSettingsSchema


PURGE_TASK = "notifications.purge"


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_server.notifications.personal import purge

    return [Task(PURGE_TASK, purge, max_attempts=3)]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [Schedule(PURGE_TASK, PURGE_TASK, every=dt.timedelta(hours=1))]


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("notifications:read", "See your notifications and notification preferences."),
        Scope(
            "notifications:write",
            "Mark your notifications read and change your notification preferences.",
        ),
    ]


@hookimpl
def mars_event_handlers() -> Sequence[EventHandler]:
    from mars_server.notifications.handlers import HANDLER_NAME, notify

    return [EventHandler(HANDLER_NAME, ("*",), notify)]


@hookimpl
def mars_app_ready(app: Flask) -> None:
    from mars_server.mail import register_template_folder

    register_template_folder(app, HERE / "templates" / "mail")


@hookimpl
def mars_plugin_purged(name: str, event_types: Sequence[str], dry_run: bool) -> Sequence[str]:
    from mars_server.notifications.services import forget_plugin

    return forget_plugin(name, event_types, dry_run=dry_run)


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.notifications.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_server.notifications.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_server.notifications.personal import erase

    return erase(user_id)
