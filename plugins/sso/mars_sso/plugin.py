"""Hook implementations of the single sign-on plugin, and nothing else.

It uses only MARS's public plugin API: the sign-in page shows its providers
(``mars_sign_in_options``), it refuses passwords for the domains that must sign in with one
(``mars_password_sign_in_refused``), and it hands the people their identity provider vouches
for to MARS's accounts (``mars_server.http.external_sign_in``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import HealthCheck, Schedule, SignInOption, Task
from mars_sso import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    import flask
    import marshmallow as ma
    from flask_smorest import Blueprint

    from mars_server.hookspecs import PersonalData

MARS_PLUGIN = PluginInfo(
    name="sso",
    version=__version__,
    requires=">=0.1,<0.2",
    description="Single sign-on with OpenID Connect and SAML 2.0 identity providers",
)

PURGE = "sso.purge_expired"


@hookimpl
def mars_settings_schema() -> type[ma.Schema]:
    from mars_sso.settings import SsoSettingsSchema

    return SsoSettingsSchema


@hookimpl
def mars_migrations_location() -> str:
    return str(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def mars_api_blueprints() -> Sequence[Blueprint]:
    from mars_sso.views import blp

    return [blp]


@hookimpl
def mars_blueprints() -> Sequence[flask.Blueprint]:
    from mars_sso.pages import blueprint

    return [blueprint]


@hookimpl
def mars_cli_commands() -> Sequence[click.Command]:
    from mars_sso.cli import sso

    return [sso]


@hookimpl
def mars_sign_in_options(next_url: str, binding: str) -> Sequence[SignInOption]:
    from mars_sso import services

    query = urlencode({"next": next_url, "binding": binding})
    return [
        SignInOption(label=found["label"], url=f"/sso/{found['name']}/start?{query}")
        for found in services.providers()
    ]


@hookimpl
def mars_password_sign_in_refused(email: str) -> str | None:
    from mars_sso import services

    found = services.provider_for_domain(email)
    if found is None:
        return None
    domain = email.rpartition("@")[2].lower()
    return f"People of {domain} sign in with their organisation's account: {found['label']}."


@hookimpl
def mars_health_checks() -> Sequence[HealthCheck]:
    from mars_sso.services import check_providers

    return [HealthCheck("sso-providers", check_providers)]


@hookimpl
def mars_tasks() -> Sequence[Task]:
    from mars_sso.services import purge_expired

    return [Task(PURGE, purge_expired, max_attempts=3)]


@hookimpl
def mars_schedules() -> Sequence[Schedule]:
    return [Schedule(PURGE, PURGE, every=dt.timedelta(hours=1))]


@hookimpl
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    from mars_sso.personal import INVENTORY

    return INVENTORY


@hookimpl
def mars_personal_data_export(user_id: str) -> dict[str, Any]:
    from mars_sso.personal import export

    return export(user_id)


@hookimpl
def mars_personal_data_erase(user_id: str) -> list[str]:
    from mars_sso.personal import erase

    return erase(user_id)
