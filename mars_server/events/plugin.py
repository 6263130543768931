"""The builtin ``events`` plugin: the tasks, schedules, commands and admin API of the job
system, through the same hooks as any plugin."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import HealthCheck, Permission, Schedule, Scope, Task
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import PersonalData

MARS_PLUGIN = PluginInfo(
    name="events",
    version=__version__,
    requires=f"=={__version__}",
    description="Events outbox, background jobs and workers",
    required=True,
)


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_server.events import maintenance
    from mars_server.events.relay import HANDLE_TASK, handle_events
    from mars_server.mail.sending import deliver_sealed

    return [
        Task(HANDLE_TASK, handle_events, max_attempts=10),
        # Mail: minutes apart, for a day; then the job is dead and shows in `mars jobs list`.
        Task(
            "mail.send",
            deliver_sealed,
            max_attempts=12,
            retry_delays=(10, 60, 300, 900, 1800, 3600, 7200, 14400),
            timeout=120,
        ),
        Task("events.purge", maintenance.purge, max_attempts=3),
    ]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [Schedule("events.purge", "events.purge", every=dt.timedelta(hours=1))]


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_server.events.cli import jobs_group, relay_command, worker_command

    return [worker_command, relay_command, jobs_group]


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.events.views import blp

    return [blp]


@hookimpl
def mars_health_checks() -> Sequence[HealthCheck]:
    from mars_server.events.health import CHECKS

    return CHECKS


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [
        Scope("jobs:read", "See background jobs (admins only)."),
        Scope("jobs:write", "Retry and purge background jobs (admins only)."),
    ]


@hookimpl
def mars_permissions() -> Sequence[Permission]:
    return [Permission("jobs:manage", "See, retry and purge background jobs.")]


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.events.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_server.events.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_server.events.personal import erase

    return erase(user_id)
