"""Hook implementations of the builtin ``webhooks`` plugin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import GraphQLPart, Schedule, Scope
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import marshmallow as ma
    from apispec import APISpec
    from flask import Flask
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.hookspecs import EventHandler, EventType, NotificationDraft, PersonalData, Task

MARS_PLUGIN = PluginInfo(
    name="webhooks",
    version=__version__,
    requires=f"=={__version__}",
    description="Webhook subscriptions, Standard Webhooks signatures, retries, delivery log",
)


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.webhooks.views import blp

    return [blp]


@hookimpl
def mars_graphql() -> GraphQLPart:
    from mars_server.webhooks.graphql import PART

    return PART


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_settings_schema() -> type[ma.Schema]:
    from mars_server.webhooks.schemas import WebhooksSettingsSchema

    return WebhooksSettingsSchema


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("webhooks:read", "See your webhook endpoints and their delivery logs."),
        Scope(
            "webhooks:write",
            "Create, change and delete your webhook endpoints, rotate their secrets and "
            "redeliver events.",
        ),
    ]


@hookimpl
def mars_event_types() -> Sequence[EventType]:
    from mars_server.webhooks.events import EVENT_TYPES

    return EVENT_TYPES


@hookimpl
def mars_openapi(spec: APISpec, event_types: Mapping[str, EventType]) -> None:
    from mars_server.webhooks.openapi import document_webhooks

    # Every plugin's event types, as the subscribers of this plugin receive them.
    document_webhooks(spec, event_types)


@hookimpl
def mars_event_handlers() -> Sequence[EventHandler]:
    from mars_server.webhooks.handlers import HANDLERS

    return HANDLERS


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_server.hookspecs import Task
    from mars_server.webhooks.maintenance import PURGE_TASK, purge
    from mars_server.webhooks.sending import BATCH_SECONDS, deliver
    from mars_server.webhooks.services import DELIVER_TASK

    return [
        Task(
            DELIVER_TASK,
            deliver,
            # Failed requests are retried by the delivery's own schedule, each a job of its
            # own; these are for a job that failed itself (the database went away).
            max_attempts=5,
            # The lease: a job begins no attempt after BATCH_SECONDS, and one attempt lasts
            # at most timeout_seconds (itself at most 15).
            timeout=BATCH_SECONDS + 120.0,
        ),
        Task(PURGE_TASK, purge, max_attempts=3),
    ]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    from mars_server.webhooks.maintenance import PURGE_TASK

    return [Schedule(PURGE_TASK, PURGE_TASK, every=dt.timedelta(hours=1))]


@hookimpl
def mars_notifications(event: Event) -> Sequence[NotificationDraft]:
    from mars_server.webhooks.events import notifications

    return notifications(event)


@hookimpl
def mars_app_ready(app: Flask) -> None:
    from mars_server.webhooks.sending import TRANSPORT_KEY, new_transport

    # One connection pool per app, shared by every worker thread.
    app.extensions[TRANSPORT_KEY] = new_transport(app)


@hookimpl
def mars_plugin_purged(name: str, event_types: Sequence[str], dry_run: bool) -> Sequence[str]:
    from mars_server.webhooks.services import forget_plugin

    return forget_plugin(name, event_types, dry_run=dry_run)


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.webhooks.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_server.webhooks.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_server.webhooks.personal import erase

    return erase(user_id)
