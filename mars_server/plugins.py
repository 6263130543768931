"""The plugin manager: builtin plugins and ``mars.plugins`` entry points, loaded alike.

Everything outside this module calls hooks through :class:`MarsPlugins`, a typed facade;
nothing calls ``pm.hook`` directly.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import re
import types
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, cast

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from mars_server import __version__, hookspecs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    import click
    import marshmallow as ma
    from apispec import APISpec
    from flask import Blueprint as FlaskBlueprint
    from flask import Flask, Request
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.http.security import Actor

log = logging.getLogger(__name__)


class _Named(Protocol):
    name: str


ENTRY_POINT_GROUP = "mars.plugins"
#: A CORS path a plugin declares: one exact path, nothing flask-cors would read as a pattern.
_EXACT_PATH = re.compile(r"/[^\s*?\[\]()^$\\]*")
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
    :param requires_plugins: the plugins this one needs, each a name and maybe a PEP 440
        specifier on its version, e.g. ``["projects>=0.1"]``: start-up refuses, naming both,
        while one is missing, disabled or of another version.
    :param api: the one module of the plugin other plugins may import (``"mars_projects.api"``);
        nothing else of it is theirs to import (an import-linter contract holds first-party
        plugins to it). ``None``: other plugins import nothing of it.
    """

    name: str
    version: str
    requires: str
    description: str = ""
    required: bool = False
    requires_plugins: Sequence[str] = ()
    api: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "requires_plugins", tuple(self.requires_plugins))


class PluginError(Exception):
    """A plugin cannot be loaded; the message names it and says why, in one line."""


@dataclass(frozen=True)
class LoadedPlugin:
    info: PluginInfo
    source: str  # "builtin" or the distribution name
    state: str  # "enabled", "disabled" or "broken" (only within :func:`broken_plugins_kept`)
    module: Any = None  # kept for a disabled plugin: its migrations still count
    problem: str = ""  # why it cannot load (broken, or disabled and broken)


#: Set by :func:`broken_plugins_kept`: a plugin that cannot load is listed, not fatal.
_keep_broken: ContextVar[bool] = ContextVar("mars_keep_broken_plugins", default=False)


@contextmanager
def broken_plugins_kept() -> Iterator[None]:
    """Within, an outside plugin that cannot load is kept as ``broken`` with its reason
    instead of stopping ``create_app``: for the commands that show what is wrong
    (``mars check``, ``mars plugins``). Serving never runs with a broken plugin."""
    token = _keep_broken.set(True)
    try:
        yield
    finally:
        _keep_broken.reset(token)


def builtin_names() -> set[str]:
    """The builtin plugins' names: their migration branches (and ``core``) belong to MARS."""
    return {path.rsplit(".", 2)[-2] for path in DEFAULT_PLUGINS}


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
    for text in info.requires_plugins:
        try:
            needed = Requirement(text)
        except InvalidRequirement:
            needed = None
        if needed is None or needed.extras or needed.url or needed.marker:
            raise PluginError(
                f"plugin {info.name!r}: requires_plugins {text!r} is not a plugin name with "
                "an optional version specifier (e.g. 'projects>=0.1')"
            )
    if info.api is not None and not _module_exists(info.api):
        raise PluginError(f"plugin {info.name!r}: api {info.api!r} is no module of it")
    return info


def _module_exists(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def _unmet_need(plugin: LoadedPlugin, by_name: dict[str, LoadedPlugin]) -> str | None:
    """Why a plugin ``plugin`` needs is not there to serve it, in one line; ``None`` if all are."""
    for text in plugin.info.requires_plugins:
        needed = Requirement(text)
        found = by_name.get(needed.name.lower())
        if found is None:
            why = "which is not installed"
        elif found.state == "disabled":
            why = (
                "which is disabled (MARS_PLUGINS_DISABLED): enable it, or disable "
                f"{plugin.info.name!r} too"
            )
        elif found.state != "enabled":
            why = f"which cannot load ({found.problem})"
        elif not needed.specifier.contains(Version(found.info.version), prereleases=True):
            why = f"which is {found.info.version}"
        else:
            continue
        return f"plugin {plugin.info.name!r} needs {text!r}, {why}"
    return None


def _check_needs(pm: pluggy.PluginManager, loaded: list[LoadedPlugin], keep_broken: bool) -> None:
    """Every enabled plugin's ``requires_plugins`` enabled and of a version it accepts; else
    :class:`PluginError` (or, within :func:`broken_plugins_kept`, the plugin is ``broken``, and
    so in turn whatever needs it)."""
    changed = True
    while changed:
        changed = False
        by_name = {plugin.info.name: plugin for plugin in loaded}
        for index, plugin in enumerate(loaded):
            if plugin.state != "enabled" or not plugin.info.requires_plugins:
                continue
            problem = _unmet_need(plugin, by_name)
            if problem is None:
                continue
            if not keep_broken or plugin.source == "builtin":
                raise PluginError(problem)
            pm.unregister(name=plugin.info.name)
            loaded[index] = replace(plugin, state="broken", problem=problem)
            changed = True


def _where(plugin: Any) -> str:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def _check_hook_names(pm: pluggy.PluginManager, name: str, plugin: Any) -> list[str]:
    """Raise :class:`PluginError` for an ``@hookimpl`` that implements no hook (a typo); return
    a warning for ``mars_*`` functions without ``@hookimpl``, which are never called."""
    hooks = [hook for hook in dir(pm.hook) if hook.startswith("mars_")]
    where = _where(plugin)
    unknown: list[str] = []
    unmarked: list[str] = []
    for attr in dir(plugin):
        value = inspect.getattr_static(plugin, attr, None)  # runs no property
        if not inspect.isroutine(value):
            continue
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is not None:
            hook = opts.get("specname") or attr
            if hook not in hooks:
                guess = difflib.get_close_matches(
                    hook if hook.startswith("mars_") else f"mars_{hook}", hooks, n=1
                )
                hint = f"; did you mean {guess[0]}?" if guess else " (see docs/plugins.md)"
                unknown.append(f"{where}.{attr} is marked @hookimpl but is no MARS hook{hint}")
        elif attr.startswith("mars_") and (
            not isinstance(plugin, types.ModuleType)
            or getattr(value, "__module__", None) == plugin.__name__
        ):
            unmarked.append(attr)
    if unknown:
        raise PluginError(f"plugin {name!r}: {'; '.join(unknown)}")
    if unmarked:
        return [
            f"plugin {name!r}: {where} defines {', '.join(unmarked)} without @hookimpl: "
            "never called (mark them @hookimpl, or rename them)"
        ]
    return []


def build_plugin_manager(disabled: Iterable[str] = ()) -> MarsPlugins:
    """Load and check every plugin; raise :class:`PluginError` naming the first bad one
    (within :func:`broken_plugins_kept`, list an outside one as ``broken`` instead)."""
    disabled = {name.strip().lower() for name in disabled}
    keep_broken = _keep_broken.get()
    pm = pluggy.PluginManager("mars")
    pm.add_hookspecs(hookspecs)
    loaded: list[LoadedPlugin] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for name, source, load in _candidates():
        module: Any = None
        try:
            module = load()
            info = _check_info(name, module)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, PluginError)
                else PluginError(f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}")
            )
            declared = getattr(module, "MARS_PLUGIN", None)
            if not isinstance(declared, PluginInfo):
                declared = PluginInfo(name, "unknown", "")
            if name in disabled and source != "builtin":
                # Disabling a plugin is how an operator gets past a broken one.
                log.warning("disabled plugin %r cannot load: %s", name, exc)
                loaded.append(LoadedPlugin(declared, source, "disabled", problem=str(error)))
                seen.add(name)
                continue
            if keep_broken and source != "builtin":
                loaded.append(LoadedPlugin(declared, source, "broken", problem=str(error)))
                seen.update({name, declared.name})
                continue
            if error is exc:
                raise
            raise error from exc
        if info.name in seen:
            raise PluginError(f"plugin {info.name!r} is installed twice (again by {source})")
        seen.update({info.name, name})
        if info.name in disabled or name in disabled:
            if info.required:
                raise PluginError(f"plugin {info.name!r} is builtin and cannot be disabled")
            loaded.append(LoadedPlugin(info, source, "disabled", module))
            continue
        try:
            warnings.extend(_check_hook_names(pm, info.name, module))
            try:
                pm.register(module, name=info.name)
            except (ValueError, pluggy.PluginValidationError) as exc:
                raise PluginError(f"plugin {info.name!r}: {exc}") from None
        except PluginError as exc:
            if not keep_broken or source == "builtin":
                raise
            if pm.get_plugin(info.name) is not None:  # half registered: take it out again
                pm.unregister(name=info.name)
            loaded.append(LoadedPlugin(info, source, "broken", module, problem=str(exc)))
            continue
        loaded.append(LoadedPlugin(info, source, "enabled"))
    unknown_disabled = disabled - seen
    if unknown_disabled:
        log.warning(
            "MARS_PLUGINS_DISABLED names no installed plugin: %s",
            ", ".join(sorted(unknown_disabled)),
        )
    _check_needs(pm, loaded, keep_broken)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r}: {exc}") from None
    for warning in warnings:
        log.warning(warning)
    return MarsPlugins(pm, loaded, warnings)


class MarsPlugins:
    """The one typed way into the hooks; see :mod:`mars_server.hookspecs`."""

    def __init__(
        self, pm: pluggy.PluginManager, loaded: list[LoadedPlugin], warnings: Sequence[str] = ()
    ) -> None:
        self._pm = pm
        self.loaded = loaded
        #: Hook mistakes that do not stop start-up (``mars_*`` functions without @hookimpl).
        self.warnings = list(warnings)

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

    def event_types_of(self, name: str) -> list[str]:
        """The names of the event types plugin ``name`` declares, enabled or disabled."""
        plugin = next(p for p in self.loaded if p.info.name == name)
        results: list[Sequence[hookspecs.EventType]]
        if plugin.state == "enabled":
            impls = self._pm.hook.mars_event_types.get_hookimpls()
            results = [
                cast("Sequence[hookspecs.EventType]", impl.function())
                for impl in impls
                if impl.plugin_name == name
            ]
        else:
            hook = getattr(plugin.module, "mars_event_types", None)
            results = [hook()] if callable(hook) else []
        return sorted(event_type.name for result in results for event_type in result)

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

    def sign_in_options(self, next_url: str, binding: str) -> list[hookspecs.SignInOption]:
        results = self._pm.hook.mars_sign_in_options(next_url=next_url, binding=binding)
        return [option for result in reversed(results) for option in result or ()]

    def password_sign_in_refused(self, email: str) -> str | None:
        return self._pm.hook.mars_password_sign_in_refused(email=email)

    def confirm_password(self, user_id: str, password: str, address: str | None) -> bool:
        confirmed = self._pm.hook.mars_confirm_password(
            user_id=user_id, password=password, address=address
        )
        return bool(confirmed)

    def external_sign_in(
        self, identity: hookspecs.ExternalIdentity, next_url: str | None, binding: str | None
    ) -> hookspecs.ExternalSignIn:
        result = self._pm.hook.mars_external_sign_in(
            identity=identity, next_url=next_url, binding=binding
        )
        if result is None:
            raise PluginError("no plugin signs people in (the builtin auth plugin is missing)")
        return cast("hookspecs.ExternalSignIn", result)

    def security_schemes(self, scopes: Mapping[str, str]) -> list[hookspecs.SecurityScheme]:
        """Every contributed security scheme, in the order the plugins were loaded (the
        builtin ones first); a name contributed twice is a :class:`PluginError`."""
        results = self._in_load_order(self._pm.hook.mars_security_schemes, {"scopes": dict(scopes)})
        return list(_by_name("security schemes", (r for r in results if r)).values())

    def openapi(self, spec: APISpec, event_types: Mapping[str, hookspecs.EventType]) -> None:
        self._in_load_order(self._pm.hook.mars_openapi, {"spec": spec, "event_types": event_types})

    def graphql_parts(self) -> list[tuple[str, hookspecs.GraphQLPart]]:
        """(plugin name, part) of every plugin's part of the GraphQL schema, in the order
        the plugins were loaded."""
        found: list[tuple[str, hookspecs.GraphQLPart]] = []
        for impl in self._impls_in_load_order(self._pm.hook.mars_graphql):
            part = cast("hookspecs.GraphQLPart | None", impl.function())
            if part is not None:
                found.append((impl.plugin_name, part))
        return found

    def blueprints(self) -> list[tuple[str, FlaskBlueprint]]:
        """(plugin name, blueprint) of every blueprint mounted outside ``/api/v1``, in the
        order the plugins were loaded."""
        found: list[tuple[str, FlaskBlueprint]] = []
        for impl in self._impls_in_load_order(self._pm.hook.mars_blueprints):
            blueprints = cast("Sequence[FlaskBlueprint] | None", impl.function())
            found += [(impl.plugin_name, blueprint) for blueprint in blueprints or ()]
        return found

    def cors_paths(self) -> list[str]:
        """The paths outside ``/api`` that plugins open to cross-origin calls, each once;
        a malformed one is a :class:`PluginError` naming the plugin."""
        paths: list[str] = []
        for impl in self._impls_in_load_order(self._pm.hook.mars_cors_paths):
            for path in cast("Sequence[str] | None", impl.function()) or ():
                if not isinstance(path, str) or not _EXACT_PATH.fullmatch(path):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: CORS path {path!r} is not an exact "
                        "path (it starts with '/' and holds none of *?[]()^$\\ or spaces)"
                    )
                if path not in paths:
                    paths.append(path)
        return paths

    def _impls_in_load_order(self, hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
        """A hook's implementations in the order their plugins were loaded (builtin plugins
        first), whatever ``tryfirst``/``trylast`` say: for hooks whose results are laid out
        in order (security schemes, routes), where pluggy's last-registered-first would put
        an outside plugin's before MARS's own."""
        order = {plugin.info.name: index for index, plugin in enumerate(self.loaded)}
        return sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, 0))

    def _in_load_order(self, hook: pluggy.HookCaller, arguments: dict[str, Any]) -> list[Any]:
        """Call each implementation of ``hook`` in load order with the arguments it takes."""
        return [
            impl.function(**{arg: arguments[arg] for arg in impl.argnames})
            for impl in self._impls_in_load_order(hook)
        ]

    def event_types(self) -> dict[str, hookspecs.EventType]:
        return _by_name("event types", self._pm.hook.mars_event_types())

    def event_handlers(self) -> dict[str, hookspecs.EventHandler]:
        return _by_name("event handlers", self._pm.hook.mars_event_handlers())

    def tasks(self) -> dict[str, hookspecs.Task]:
        return _by_name("tasks", self._pm.hook.mars_tasks())

    def schedules(self) -> dict[str, hookspecs.Schedule]:
        return _by_name("schedules", self._pm.hook.mars_schedules())

    def backup_checks(self) -> dict[str, hookspecs.BackupCheck]:
        return _by_name("backup checks", self._pm.hook.mars_backup_checks())

    def notifications(self, event: Event) -> list[hookspecs.NotificationDraft]:
        return [
            draft for result in self._pm.hook.mars_notifications(event=event) for draft in result
        ]

    def audit_entry(self, entry: hookspecs.AuditEntry) -> None:
        self._pm.hook.mars_audit_entry(entry=entry)

    def app_ready(self, app: Flask) -> None:
        self._pm.hook.mars_app_ready(app=app)

    def plugin_purged(
        self, name: str, event_types: Sequence[str], *, dry_run: bool = False
    ) -> dict[str, list[str]]:
        """What each enabled plugin but ``name`` removed of plugin ``name`` (with ``dry_run``:
        would remove), by plugin name; those that had nothing are left out. Raise
        :class:`PluginError` naming the plugin whose implementation failed."""
        arguments: dict[str, object] = {
            "name": name,
            "event_types": list(event_types),
            "dry_run": dry_run,
        }
        removed: dict[str, list[str]] = {}
        for impl in self._pm.hook.mars_plugin_purged.get_hookimpls():
            if impl.plugin_name == name:
                continue
            try:
                lines = cast(
                    "Sequence[str] | None",
                    impl.function(**{arg: arguments[arg] for arg in impl.argnames}),
                )
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed to remove what it keeps of {name!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if lines:
                removed[impl.plugin_name] = [str(line) for line in lines]
        return removed

    def not_purging(self, name: str) -> list[str]:
        """The disabled plugins (but ``name``) that implement ``mars_plugin_purged``: a purge
        of plugin ``name`` cannot ask them, so what they keep of it stays."""
        return [
            plugin.info.name
            for plugin in self.loaded
            if plugin.state == "disabled"
            and plugin.info.name != name
            and plugin.module is not None
            and self._pm.parse_hookimpl_opts(plugin.module, "mars_plugin_purged") is not None
        ]

    def personal_data_inventory(self) -> dict[str, list[hookspecs.PersonalData]]:
        """Each plugin's declared personal data, by plugin name, in load order."""
        found: dict[str, list[hookspecs.PersonalData]] = {}
        for impl in self._impls_in_load_order(self._pm.hook.mars_personal_data_inventory):
            records = cast("Sequence[hookspecs.PersonalData] | None", impl.function())
            found[impl.plugin_name] = list(records or ())
        return found

    def personal_data_export(self, user_id: str) -> dict[str, Any]:
        """What each plugin stores about ``user_id``, by plugin name; empty ones left out."""
        found: dict[str, Any] = {}
        for impl in self._impls_in_load_order(self._pm.hook.mars_personal_data_export):
            data = cast("Mapping[str, Any] | None", impl.function(user_id=user_id))
            if data:
                found[impl.plugin_name] = dict(data)
        return found

    def personal_data_erase(self, user_id: str) -> dict[str, list[str]]:
        """Ask every plugin to erase ``user_id``, in reverse load order: outside plugins
        first, the builtin ones after them, ``auth`` (which deletes the account) last but
        for ``ops``. Returns each plugin's lines, by plugin name."""
        done: dict[str, list[str]] = {}
        for impl in reversed(self._impls_in_load_order(self._pm.hook.mars_personal_data_erase)):
            lines = cast("Sequence[str] | None", impl.function(user_id=user_id))
            if lines:
                done[impl.plugin_name] = [str(line) for line in lines]
        return done

    def account_deletion_blockers(self, user_id: str) -> list[str]:
        results = self._in_load_order(
            self._pm.hook.mars_account_deletion_blockers, {"user_id": user_id}
        )
        return [str(reason) for result in results for reason in (result or ())]

    def modules(self) -> dict[str, Any]:
        """The enabled plugins' modules, by plugin name."""
        return {name: module for name, module in self._pm.list_name_plugin() if name}

    def implementers(self, hook_name: str) -> set[str]:
        """The names of the plugins that implement ``hook_name``."""
        return {impl.plugin_name for impl in getattr(self._pm.hook, hook_name).get_hookimpls()}

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
