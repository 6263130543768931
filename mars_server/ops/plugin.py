"""The builtin ``ops`` plugin: meta endpoints, core health checks and operator commands.

It goes through the same hooks as any outside plugin.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import Schedule, Task
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import HealthCheck, PersonalData

MARS_PLUGIN = PluginInfo(
    name="ops",
    version=__version__,
    requires=f"=={__version__}",
    description="Meta endpoints, health checks, operator commands",
    required=True,
)

BACKUP_TASK = "ops.backup"
#: deletes idempotency records past MARS_IDEMPOTENCY_TTL_SECONDS
PURGE_IDEMPOTENCY_TASK = "ops.purge_idempotency"


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.ops import operations_views
    from mars_server.ops.meta import blp

    return [blp, operations_views.blp]


@hookimpl
def mars_health_checks() -> Sequence[HealthCheck]:
    from mars_server.ops.health import CORE_CHECKS

    return CORE_CHECKS


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_server.graphql.cli import graphql
    from mars_server.ops.backup_cli import backup_group
    from mars_server.ops.commands import db_group, openapi, plugins
    from mars_server.ops.keys import keys_group
    from mars_server.ops.privacy_cli import privacy_group
    from mars_server.ops.ratelimit_cli import ratelimit
    from mars_server.sdkgen.cli import sdk

    return [
        db_group,
        plugins,
        openapi,
        graphql,
        ratelimit,
        sdk,
        backup_group,
        keys_group,
        privacy_group,
    ]


def _backup() -> None:
    from mars_server.ops import backup

    backup.scheduled()


def _purge_idempotency() -> None:
    """Idempotency records past their time, and finished operations past their retention."""
    from mars_server.http.idempotency import purge_expired
    from mars_server.metrics import purged
    from mars_server.ops.personal import purge_operations

    purged("idempotency_records", purge_expired())
    purged("operations", purge_operations())


@hookimpl
def mars_tasks() -> Sequence[Task]:
    # A backup of a large database takes long: its lease is an hour; a failed one is
    # recorded and taken again at the next hourly run, not retried at once.
    return [
        Task(BACKUP_TASK, _backup, max_attempts=1, timeout=3600.0),
        Task(PURGE_IDEMPOTENCY_TASK, _purge_idempotency, max_attempts=3),
    ]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    # Hourly: the task itself takes a backup when MARS_BACKUP_EVERY_HOURS have passed.
    return [
        Schedule(BACKUP_TASK, BACKUP_TASK, every=dt.timedelta(hours=1)),
        Schedule(PURGE_IDEMPOTENCY_TASK, PURGE_IDEMPOTENCY_TASK, every=dt.timedelta(hours=1)),
    ]


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.ops.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_server.ops.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_server.ops.personal import erase

    return erase(user_id)
