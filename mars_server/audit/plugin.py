"""The builtin ``audit`` plugin: every change and security event, as an append-only,
hash-chained log, through the same hooks as any plugin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mars_server import __version__, hookimpl
from mars_server.hookspecs import GraphQLPart, Permission, Schedule, Scope, Task
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import AuditEntry, BackupCheck, PersonalData

MARS_PLUGIN = PluginInfo(
    name="audit",
    version=__version__,
    requires=f"=={__version__}",
    description="Append-only, hash-chained audit log",
    required=True,
)

SEAL_TASK = "audit.seal"
#: How often committed entries are sealed into the chain.
SEAL_EVERY = dt.timedelta(seconds=5)


@hookimpl
def mars_audit_entry(entry: AuditEntry) -> None:
    from mars_server.audit.records import record

    record(entry)


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_server.audit.chain import seal_task

    return [Task(SEAL_TASK, seal_task, max_attempts=3, retry_delays=(1.0, 5.0), timeout=120)]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [Schedule(SEAL_TASK, SEAL_TASK, every=SEAL_EVERY)]


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_server.audit import personal

    return personal.INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_server.audit import personal

    return personal.export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_server.audit import personal

    return personal.erase(user_id)


@hookimpl
def mars_backup_checks() -> Sequence[BackupCheck]:
    from mars_server.audit.backup import CHECK

    return [CHECK]


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_server.audit.cli import audit_group

    return [audit_group]


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.audit.views import blp

    return [blp]


@hookimpl
def mars_graphql() -> GraphQLPart:
    from mars_server.audit.graphql import PART

    return PART


@hookimpl
def mars_scopes() -> Sequence[Scope]:
    return [Scope("audit:read", "Read the audit log (admins only).")]


@hookimpl
def mars_permissions() -> Sequence[Permission]:
    return [Permission("audit:read", "Read the audit log: every change and security event.")]
