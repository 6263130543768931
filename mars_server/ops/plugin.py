"""The builtin ``ops`` plugin: meta endpoints, core health checks and operator commands.

It goes through the same hooks as any outside plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mars_server import __version__, hookimpl
from mars_server.plugins import PluginInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask_smorest import Blueprint

    from mars_server.hookspecs import HealthCheck

MARS_PLUGIN = PluginInfo(
    name="ops",
    version=__version__,
    requires=f"=={__version__}",
    description="Meta endpoints, health checks, operator commands",
    required=True,
)


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_server.ops.meta import blp

    return [blp]


@hookimpl
def mars_health_checks() -> Sequence[HealthCheck]:
    from mars_server.ops.health import CORE_CHECKS

    return CORE_CHECKS


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_server.ops.commands import db_group, openapi, plugins
    from mars_server.ops.ratelimit_cli import ratelimit
    from mars_server.sdkgen.cli import sdk

    return [db_group, plugins, openapi, ratelimit, sdk]
