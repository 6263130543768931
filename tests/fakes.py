"""Plugins that the plugin-system tests install through fake entry points."""

from __future__ import annotations

from types import SimpleNamespace

import click
import marshmallow as ma

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import HealthCheck

ready_calls: list[object] = []


class _Plugin(SimpleNamespace):
    pass


class GoodSettings(ma.Schema):
    greeting = ma.fields.String(load_default="hello")
    retries = ma.fields.Integer(load_default=3, validate=ma.validate.Range(min=0))


class Good:
    MARS_PLUGIN = PluginInfo(
        name="good", version="1.2.3", requires=">=0.1", description="a well-behaved test plugin"
    )

    @hookimpl
    def mars_settings_schema(self) -> type[ma.Schema]:
        return GoodSettings

    @hookimpl
    def mars_cli_commands(self) -> list[click.Command]:
        @click.command("good-hello")
        def hello() -> None:
            from mars_server import plugin_settings

            click.echo(plugin_settings("good")["greeting"])

        return [hello]

    @hookimpl
    def mars_health_checks(self) -> list[HealthCheck]:
        def fail() -> None:
            raise RuntimeError("secret-ish detail that must not reach the response")

        return [HealthCheck("good-always-fails", fail)] if FLAGS["fail_health"] else []

    @hookimpl
    def mars_app_ready(self, app: object) -> None:
        ready_calls.append(app)


FLAGS = {"fail_health": False}
good = Good()


class Incompatible:
    MARS_PLUGIN = PluginInfo(name="oldie", version="0.0.1", requires=">=9.0")


incompatible = Incompatible()


class UnknownHook:
    MARS_PLUGIN = PluginInfo(name="typo", version="1.0", requires=">=0.1")

    @hookimpl
    def mars_api_blueprint(self) -> list[object]:  # the real hook is mars_api_blueprints
        return []


unknown_hook = UnknownHook()


class NoInfo:
    pass


no_info = NoInfo()


class BadSpecifier:
    MARS_PLUGIN = PluginInfo(name="badspec", version="1.0", requires="version one please")


bad_specifier = BadSpecifier()
