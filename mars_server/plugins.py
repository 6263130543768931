"""The plugin manager: builtin plugins and ``mars.plugins`` entry points, loaded alike.

Everything outside this module calls hooks through :class:`MarsPlugins`, a typed facade;
nothing calls ``pm.hook`` directly.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, cast

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from mars_server import __version__, hookspecs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import click
    import marshmallow as ma
    from flask import Flask, Request
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.http.security import Actor

log = logging.getLogger(__name__)


class _Named(Protocol):
    name: str


ENTRY_POINT_GROUP = "mars.plugins"
#: Builtin plugins, registered by the same code path as outside ones.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "mars_server.ops.plugin",
    "mars_server.auth.plugin",
    "mars_server.events.plugin",
    "mars_server.audit.plugin",
    "mars_server.notifications.plugin",
    "mars_server.webhooks.plugin",
)


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin module declares as ``MARS_PLUGIN``.

    :param name: short lower-case name: settings section, migration branch label, CLI group.
    :param version: the plugin's own version.
    :param requires: a PEP 440 specifier on ``mars_server``'s version, e.g. ``">=0.1,<0.2"``.
    :param description: one line for ``mars plugins list``.
    :param required: a builtin the core cannot run without; it cannot be disabled.
    """

    name: str
    version: str
    requires: str
    description: str = ""
    required: bool = False


class PluginError(Exception):
    """A plugin cannot be loaded; the message names it and says why, in one line."""


@dataclass(frozen=True)
class LoadedPlugin:
    info: PluginInfo
    source: str  # "builtin" or the distribution name
    state: str  # "enabled" or "disabled"
    module: Any = None  # kept for a disabled plugin: its migrations still count


def _import_builtin(path: str) -> Callable[[], Any]:
    return lambda: importlib.import_module(path)


def _candidates() -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, source, loader) of every builtin, then every entry point, by name."""
    found = [
        (path.rsplit(".", 2)[-2], "builtin", _import_builtin(path)) for path in DEFAULT_PLUGINS
    ]
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        source = ep.dist.name if ep.dist is not None else ep.value
        found.append((ep.name, source, ep.load))
    return found


def _check_info(name: str, module: Any) -> PluginInfo:
    info = getattr(module, "MARS_PLUGIN", None)
    if not isinstance(info, PluginInfo):
        raise PluginError(f"plugin {name!r}: declares no MARS_PLUGIN = PluginInfo(...)")
    try:
        supported = SpecifierSet(info.requires)
    except InvalidSpecifier:
        raise PluginError(
            f"plugin {name!r}: requires {info.requires!r} is not a version specifier"
        ) from None
    if not supported.contains(Version(__version__), prereleases=True):
        raise PluginError(
            f"plugin {info.name!r} {info.version} supports mars_server "
            f"{info.requires}, this is {__version__}"
        )
    return info


def build_plugin_manager(disabled: Iterable[str] = ()) -> MarsPlugins:
    """Load and check every plugin; raise :class:`PluginError` naming the first bad one."""
    disabled = {name.strip().lower() for name in disabled}
    pm = pluggy.PluginManager("mars")
    pm.add_hookspecs(hookspecs)
    loaded: list[LoadedPlugin] = []
    seen: set[str] = set()
    for name, source, load in _candidates():
        try:
            module = load()
            info = _check_info(name, module)
        except Exception as exc:
            if name in disabled and source != "builtin":
                # Disabling a plugin is how an operator gets past a broken one.
                log.warning("disabled plugin %r cannot load: %s", name, exc)
                loaded.append(LoadedPlugin(PluginInfo(name, "unknown", ""), source, "disabled"))
                seen.add(name)
                continue
            if isinstance(exc, PluginError):
                raise
            raise PluginError(
                f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        if info.name in seen:
            raise PluginError(f"plugin {info.name!r} is installed twice (again by {source})")
        seen.update({info.name, name})
        if info.name in disabled or name in disabled:
            if info.required:
                raise PluginError(f"plugin {info.name!r} is builtin and cannot be disabled")
            loaded.append(LoadedPlugin(info, source, "disabled", module))
            continue
        try:
            pm.register(module, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {info.name!r}: {exc}") from None
        loaded.append(LoadedPlugin(info, source, "enabled"))
    unknown_disabled = disabled - seen
    if unknown_disabled:
        log.warning(
            "MARS_PLUGINS_DISABLED names no installed plugin: %s",
            ", ".join(sorted(unknown_disabled)),
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r}: {exc}") from None
    return MarsPlugins(pm, loaded)


class MarsPlugins:
    """The one typed way into the hooks; see :mod:`mars_server.hookspecs`."""

    def __init__(self, pm: pluggy.PluginManager, loaded: list[LoadedPlugin]) -> None:
        self._pm = pm
        self.loaded = loaded

    @property
    def enabled(self) -> list[PluginInfo]:
        return [p.info for p in self.loaded if p.state == "enabled"]

    def api_blueprints(self) -> list[Blueprint]:
        return [bp for result in self._pm.hook.mars_api_blueprints() for bp in result]

    def migrations_locations(self) -> list[str]:
        """Every plugin's revisions, disabled ones' too: their tables may exist already, and
        Alembic must know every revision the database has seen."""
        locations = [loc for loc in self._pm.hook.mars_migrations_location() if loc]
        for plugin in self.loaded:
            hook = getattr(plugin.module, "mars_migrations_location", None)
            if plugin.state == "disabled" and callable(hook):
                location = hook()
                if location:
                    locations.append(location)
        return locations

    def migrations_by_plugin(self) -> dict[str, str]:
        """Each enabled plugin's migrations folder, by plugin name (its branch label)."""
        found: dict[str, str] = {}
        for impl in self._pm.hook.mars_migrations_location.get_hookimpls():
            location = cast("str | None", impl.function())
            if location:
                found[impl.plugin_name] = location
        return found

    def cli_commands(self) -> list[click.Command]:
        return [cmd for result in self._pm.hook.mars_cli_commands() for cmd in result]

    def settings_schemas(self) -> dict[str, type[ma.Schema]]:
        """Each plugin's settings schema, by plugin name."""
        schemas: dict[str, type[ma.Schema]] = {}
        for impl in self._pm.hook.mars_settings_schema.get_hookimpls():
            schema = cast("type[ma.Schema] | None", impl.function())
            if schema is not None:
                schemas[impl.plugin_name] = schema
        return schemas

    def health_checks(self) -> list[hookspecs.HealthCheck]:
        checks = [check for result in self._pm.hook.mars_health_checks() for check in result]
        names = [check.name for check in checks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise PluginError(f"health check names used twice: {', '.join(duplicates)}")
        return checks

    def actor_from_request(self, request: Request) -> Actor | None:
        return self._pm.hook.mars_actor_from_request(request=request)

    def scopes(self) -> list[hookspecs.Scope]:
        scopes = [scope for result in self._pm.hook.mars_scopes() for scope in result]
        names = [scope.name for scope in scopes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise PluginError(f"scopes declared twice: {', '.join(duplicates)}")
        return sorted(scopes, key=lambda scope: scope.name)

    def permissions(self) -> list[hookspecs.Permission]:
        return sorted(
            (p for result in self._pm.hook.mars_permissions() for p in result),
            key=lambda permission: permission.name,
        )

    def user_info(self, user_id: str) -> hookspecs.UserInfo | None:
        return self._pm.hook.mars_user_info(user_id=user_id)

    def event_types(self) -> dict[str, hookspecs.EventType]:
        return _by_name("event types", self._pm.hook.mars_event_types())

    def event_handlers(self) -> dict[str, hookspecs.EventHandler]:
        return _by_name("event handlers", self._pm.hook.mars_event_handlers())

    def tasks(self) -> dict[str, hookspecs.Task]:
        return _by_name("tasks", self._pm.hook.mars_tasks())

    def schedules(self) -> dict[str, hookspecs.Schedule]:
        return _by_name("schedules", self._pm.hook.mars_schedules())

    def notifications(self, event: Event) -> list[hookspecs.NotificationDraft]:
        return [
            draft for result in self._pm.hook.mars_notifications(event=event) for draft in result
        ]

    def audit_entry(self, entry: hookspecs.AuditEntry) -> None:
        self._pm.hook.mars_audit_entry(entry=entry)

    def app_ready(self, app: Flask) -> None:
        self._pm.hook.mars_app_ready(app=app)

    def hook_names(self) -> Sequence[str]:
        return [name for name in dir(self._pm.hook) if name.startswith("mars_")]


def _by_name(what: str, results: Iterable[Iterable[_Named]]) -> dict[str, Any]:
    """Flatten hook results into a dict by ``name``; a name declared twice is an error."""
    found: dict[str, Any] = {}
    for result in results:
        for item in result:
            if item.name in found:
                raise PluginError(f"{what} declared twice: {item.name}")
            found[item.name] = item
    return found
