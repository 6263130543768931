"""Hook implementations of the projects plugin, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_projects import __version__
from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import GraphQLPart, HealthCheck, Scope

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    import marshmallow as ma
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.hookspecs import EventType, NotificationDraft, PersonalData

MARS_PLUGIN = PluginInfo(
    name="projects",
    version=__version__,
    requires=">=0.1,<0.2",
    description="Projects: create, list, share",
    # What other plugins may ask of projects (who may see one, its members): only this module.
    api="mars_projects.api",
)


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_projects.views import blp

    return [blp]


@hookimpl
def mars_graphql() -> GraphQLPart:
    from mars_projects.graphql import PART

    return PART


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_projects.cli import projects

    return [projects]


@hookimpl
def mars_settings_schema() -> type[ma.Schema]:
    from mars_projects.schemas import ProjectsSettingsSchema

    return ProjectsSettingsSchema


def _projects_table_readable() -> None:
    import sqlalchemy as sa

    from mars_projects.models import Project
    from mars_server.db import db

    db.session.execute(sa.select(Project.id).limit(1))


@hookimpl
def mars_health_checks() -> Sequence[HealthCheck]:
    return [HealthCheck("projects", _projects_table_readable)]


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("projects:read", "See the projects you belong to, and public ones."),
        Scope("projects:write", "Create projects, change them and their members."),
    ]


@hookimpl
def mars_event_types() -> Sequence[EventType]:
    from mars_projects.events import EVENT_TYPES

    return EVENT_TYPES


@hookimpl
def mars_notifications(event: Event) -> Sequence[NotificationDraft]:
    from mars_projects.events import notifications_for

    return notifications_for(event)


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_projects.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_projects.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_projects.personal import erase

    return erase(user_id)


@hookimpl
def mars_account_deletion_blockers(user_id: str) -> list[str]:
    from mars_projects.personal import blockers

    return blockers(user_id)
