"""``create_app``: config -> extensions -> plugins -> blueprints, and nothing at import time."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import marshmallow as ma
import sqlalchemy as sa
from flask import Flask
from flask.cli import with_appcontext
from werkzeug.middleware.proxy_fix import ProxyFix

from mars_server import __version__
from mars_server import cache as shared_cache
from mars_server import config as settings_sources
from mars_server.db import db
from mars_server.events import context as acting_context
from mars_server.extensions import cors, migrate
from mars_server.graphql import schema as graphql_schema
from mars_server.graphql import views as graphql_views
from mars_server.http import (
    conditional,
    headers,
    idempotency,
    limits,
    pagination,
    problems,
    ratelimit,
    requests,
    spec,
)
from mars_server.http.json import json_provider
from mars_server.ops import health
from mars_server.ops import metrics as ops_metrics
from mars_server.ops import migrations as _migrations  # noqa: F401  (Alembic's version folders)
from mars_server.ops.logging import configure_logging
from mars_server.plugins import MarsPlugins, PluginError, build_plugin_manager

if TYPE_CHECKING:
    from collections.abc import Mapping

    from alembic.script import ScriptDirectory
    from flask import Blueprint as FlaskBlueprint
    from flask import Response
    from graphql import GraphQLSchema

    from mars_server.hookspecs import (
        EventHandler,
        EventType,
        HealthCheck,
        Permission,
        Schedule,
        Task,
    )

log = logging.getLogger(__name__)

CORE_MIGRATIONS = Path(__file__).parent / "migrations"
#: libpq's connect_timeout, unless the database URL sets its own.
CONNECT_TIMEOUT_SECONDS = 10
CORS_EXPOSED = [
    "ETag",
    "Link",
    "Location",
    "Retry-After",
    "X-Request-ID",
    "RateLimit",
    "RateLimit-Policy",
    "Deprecation",
    "Sunset",
    "Idempotent-Replayed",
]
CORS_ALLOWED = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
]


@dataclass
class MarsState:
    """What MARS keeps per app, at ``app.extensions["mars"]``."""

    plugins: MarsPlugins
    plugin_settings: dict[str, dict[str, Any]]
    health_checks: list[HealthCheck]
    permissions: list[Permission]
    scopes: dict[str, str]
    migrations_locations: list[str]
    #: the core's and the plugins' GraphQL schema (``mars_graphql``), served at /api/v1/graphql
    graphql_schema: GraphQLSchema
    #: the paths outside ``/api`` that plugins open to cross-origin calls (``mars_cors_paths``)
    cors_paths: list[str] = field(default_factory=list)
    event_types: dict[str, EventType] = field(default_factory=dict)
    event_handlers: dict[str, EventHandler] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: every revision of the core and the plugins, read once (``ops.migrations``)
    script_directory: ScriptDirectory | None = None


def _checked_schedules(plugins: MarsPlugins) -> dict[str, Schedule]:
    schedules = plugins.schedules()
    tasks = plugins.tasks()
    for schedule in schedules.values():
        if schedule.task not in tasks:
            raise PluginError(
                f"schedule {schedule.name!r} names no declared task {schedule.task!r}"
            )
        # enqueue() takes these itself: as a task's arguments they would be lost.
        reserved = sorted(set(schedule.kwargs) & {"key", "run_at", "max_attempts", "task"})
        if reserved:
            raise PluginError(
                f"schedule {schedule.name!r}: kwargs {', '.join(reserved)} are enqueue()'s "
                "own options, not task arguments; rename them"
            )
    return schedules


def _validate_plugin_settings(
    raw: settings_sources.RawConfig, plugins: MarsPlugins
) -> dict[str, dict[str, Any]]:
    schemas = plugins.settings_schemas()
    sections: dict[str, dict[str, Any]] = {}
    for name, schema in schemas.items():
        loader = schema(unknown=ma.RAISE)
        section = settings_sources.plugin_setting_files(
            name, raw.plugins.get(name, {}), loader.fields, raw.problems
        )
        try:
            sections[name] = loader.load(section)
        except ma.ValidationError as exc:
            for key, messages in sorted(exc.normalized_messages().items()):
                raw.problems.append(
                    f"plugin {name!r} setting {key!r}: {' '.join(map(str, messages))}"
                )
    enabled = {info.name for info in plugins.enabled}
    for name, section in raw.plugins.items():
        if name not in enabled:
            raw.warnings.append(f"settings for {name!r}, which is not an enabled plugin, ignored")
        elif name not in schemas and section:
            raw.problems.append(f"plugin {name!r} takes no settings")
    return sections


def _engine_options(settings: dict[str, Any]) -> dict[str, Any]:
    # A database error's message (logged, kept as a job's last error) shows the statement but
    # never its parameters: they may be a password's hash, a sealed secret, personal data.
    if settings["DATABASE_URL"].startswith("sqlite"):
        return {
            "hide_parameters": True,
            "connect_args": {"timeout": settings["SQLITE_BUSY_TIMEOUT_MS"] / 1000},
        }
    connect_args: dict[str, Any] = {"options": _postgres_options(settings)}
    if "connect_timeout" not in sa.engine.make_url(settings["DATABASE_URL"]).query:
        # A database that does not answer at all fails the request (503), not hangs it.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return {
        "hide_parameters": True,
        "pool_pre_ping": True,
        "pool_size": settings["DATABASE_POOL_SIZE"],
        "connect_args": connect_args,
    }


def _postgres_options(settings: dict[str, Any]) -> str:
    """libpq ``options`` for every connection: PostgreSQL itself cancels a statement that runs,
    or waits for a lock, too long, so a request on a stuck database ends (503) instead of
    holding its worker forever. After any ``options`` the URL gives, which ``connect_args``
    would otherwise replace. Migrations lift the statement timeout (migrations/env.py)."""
    given = sa.engine.make_url(settings["DATABASE_URL"]).query.get("options", ())
    options = [given] if isinstance(given, str) else list(given)
    for name, key in (
        ("statement_timeout", "DATABASE_STATEMENT_TIMEOUT_MS"),
        ("lock_timeout", "DATABASE_LOCK_TIMEOUT_MS"),
    ):
        if settings[key]:  # 0: none from MARS; the server's (or the role's) default holds
            options.append(f"-c {name}={int(settings[key])}")
    return " ".join(options)


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _finish_response(response: Response) -> Response:
    """after_request, in one place so the order is plain: headers first, then replay copy."""
    response = conditional.apply_etag(response)
    response = pagination.add_link_header(response)
    response = requests.add_request_id(response)
    response = ratelimit.add_rate_limit_headers(response)
    response = headers.add_security_headers(response)
    response = headers.vary_on_origin(response)
    response = idempotency.store_response(response)
    requests.log_request(response)
    return response


def _in_app_context(command: click.Command) -> click.Command:
    """Make a plugin's command (and a group's subcommands) run inside an app context, and
    attribute what it does to the operator (``cli:<login>``) in events and the audit log."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _in_app_context(sub)
    elif command.callback is not None and not getattr(command, "_mars_app_context", False):
        callback = command.callback

        @functools.wraps(callback)
        def as_operator(*args: Any, **kwargs: Any) -> Any:
            with acting_context.acting_as(acting_context.operator()):
                return callback(*args, **kwargs)

        command.callback = with_appcontext(as_operator)
        command._mars_app_context = True  # type: ignore[attr-defined]
    return command


def _mount_outside_api(app: Flask, plugin: str, blueprint: FlaskBlueprint) -> None:
    """Register a plugin's ``mars_blueprints`` blueprint as it is; a route it puts under
    ``/api`` (the API's, with its conventions: ``mars_api_blueprints``) or a name already
    taken is a :class:`PluginError` naming the plugin."""
    try:
        app.register_blueprint(blueprint)
    except ValueError as exc:  # Flask: the name is another blueprint's
        raise PluginError(f"plugin {plugin!r}: blueprint {blueprint.name!r}: {exc}") from None
    for rule in app.url_map.iter_rules():
        in_blueprint = rule.endpoint.startswith(f"{blueprint.name}.")
        if in_blueprint and (rule.rule == "/api" or rule.rule.startswith("/api/")):
            raise PluginError(
                f"plugin {plugin!r}: blueprint {blueprint.name!r} mounts {rule.rule} under "
                "/api; API operations come from mars_api_blueprints"
            )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a MARS application.

    Settings come from the defaults, then the TOML file named by ``MARS_CONFIG``, then
    ``MARS_*`` environment variables, then the ``config`` mapping. Raises
    :class:`~mars_server.settings_sources.ConfigError` listing every problem, or
    :class:`~mars_server.plugins.PluginError` naming a plugin that cannot load.
    """
    raw = settings_sources.gather(config)
    instance_path = raw.core.get("INSTANCE_PATH")
    app = Flask(
        "mars_server", instance_path=os.path.abspath(instance_path) if instance_path else None
    )
    settings = settings_sources.validate_core(raw, app.instance_path)
    if not settings:
        raise settings_sources.ConfigError(raw.problems)
    plugins = build_plugin_manager(settings["PLUGINS_DISABLED"])
    plugin_settings = _validate_plugin_settings(raw, plugins)
    if raw.problems:
        raise settings_sources.ConfigError(raw.problems)

    configure_logging(settings["LOG_LEVEL"], settings["LOG_FORMAT"])
    for warning in raw.warnings:
        log.warning(warning)

    Path(settings["INSTANCE_PATH"]).mkdir(parents=True, exist_ok=True)
    app.config.update(
        ENV_NAME=settings["ENV"],
        TESTING=settings["ENV"] == "testing",
        # Tests see what clients see: failures become problems, never raised exceptions.
        PROPAGATE_EXCEPTIONS=False,
        SECRET_KEY=settings["SECRET_KEY"],
        MAX_CONTENT_LENGTH=settings["MAX_CONTENT_LENGTH"],
        SQLALCHEMY_DATABASE_URI=settings["DATABASE_URL"],
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        SQLALCHEMY_SESSION_OPTIONS={"expire_on_commit": False},
        MARS=settings,
        **spec.smorest_config(__version__, settings),
    )
    app.config.update(raw.passthrough)
    app.json = json_provider(app)  # response bodies encoded by orjson (http/json.py)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # fields in schema order
    app.request_class = requests.MarsRequest  # a malformed JSON body: a 400 saying why
    if settings["PROXY_FIX_HOPS"]:
        hops = settings["PROXY_FIX_HOPS"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    db.init_app(app)
    shared_cache.init_app(app)  # Redis when MARS_REDIS_URL is set, else in memory
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(
                db.engine, "connect", _sqlite_pragmas(settings["SQLITE_BUSY_TIMEOUT_MS"])
            )
    # Flask-Migrate's own commands stay reachable as `mars alembic ...` (stamp, merge, show);
    # `mars db` is MARS's, upgrading every branch.
    migrate.init_app(app, db, directory=str(CORE_MIGRATIONS), command="alembic")

    scopes = {scope.name: scope.description for scope in plugins.scopes()}
    spec_plugin = spec.MarsSpecPlugin(scopes, plugins.security_schemes(scopes=scopes))
    api = spec.MarsApi(app, spec_kwargs={"extra_plugins": [spec_plugin]})
    problems.register_problem_handlers(app)
    event_types = plugins.event_types()
    # Before the operations: what a plugin adds to components, operations may refer to.
    plugins.openapi(spec=api.spec, event_types=event_types)
    for blueprint in plugins.api_blueprints():
        root = spec.api_root(getattr(blueprint, "api_version", 1))
        api.register_blueprint(blueprint, url_prefix=root + (blueprint.url_prefix or ""))
    app.register_blueprint(spec.docs_assets_blueprint())
    app.register_blueprint(graphql_views.blueprint)
    for name, blueprint in plugins.blueprints():
        _mount_outside_api(app, name, blueprint)

    app.register_blueprint(health.blueprint)
    ratelimit.init_app(app)  # after the blueprints: it reads their operations' own limits
    # /metrics, and the request and pool metrics; its after_request runs last (registered
    # first), so it counts the status actually sent.
    ops_metrics.init_app(app)
    for command in plugins.cli_commands():
        app.cli.add_command(_in_app_context(command))

    app.before_request(requests.start_request)
    app.before_request(limits.check_request_head)  # before a key is claimed for the request
    app.after_request(limits.discard_refused_body)
    # A request over its rate limit does nothing: refused before its key is claimed.
    app.before_request(ratelimit.check_rate_limits)
    app.before_request(idempotency.claim_key)
    app.after_request(_finish_response)
    app.teardown_request(idempotency.release_unfinished)
    # A request's session ends with the request, even where an outer app context (a CLI
    # command, a test) lives on: no identity map leaks from one request into the next.
    app.teardown_request(lambda _exc: db.session.remove())
    cors_paths = plugins.cors_paths()
    if settings["CORS_ORIGINS"]:
        cors.init_app(
            app,
            # The API, and the exact paths outside it that plugins declare for browser apps
            # (auth: what a browser app needs of the OAuth server, not the pages).
            resources={
                path: {"origins": settings["CORS_ORIGINS"]} for path in (r"/api/*", *cors_paths)
            },
            supports_credentials=True,
            expose_headers=CORS_EXPOSED,
            allow_headers=CORS_ALLOWED,
            max_age=600,
            vary_header=True,
            # No CORS headers for a request that sent no Origin (it is no browser's).
            always_send=False,
        )

    app.extensions["mars"] = MarsState(
        plugins=plugins,
        plugin_settings=plugin_settings,
        health_checks=plugins.health_checks(),
        permissions=plugins.permissions(),
        scopes=scopes,
        migrations_locations=plugins.migrations_locations(),
        cors_paths=cors_paths,
        event_types=event_types,
        event_handlers=plugins.event_handlers(),
        tasks=plugins.tasks(),
        schedules=_checked_schedules(plugins),
        warnings=raw.warnings,
        graphql_schema=graphql_schema.build_schema(plugins, settings["PAGE_SIZE_DEFAULT"]),
    )
    plugins.app_ready(app=app)
    return app
