"""Every hook a MARS plugin may implement: this module *is* the plugin API.

A plugin is a module (or object) with a ``MARS_PLUGIN`` :class:`~mars_server.PluginInfo`
and functions decorated with :data:`mars_server.hookimpl` whose names are those below.
Hooks are always called with keyword arguments; an implementation may accept any subset
of the documented parameters. ``docs/plugins.md`` documents each one with its signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import click
    import marshmallow as ma
    from flask import Flask, Request
    from flask_smorest import Blueprint

    from mars_server.http.security import Actor

hookspec = pluggy.HookspecMarker("mars")


@dataclass(frozen=True)
class HealthCheck:
    """A named readiness check: ``check()`` returns on success and raises on failure.

    The exception's message is shown to operators in ``/readyz``; keep secrets out of it.
    """

    name: str
    check: Callable[[], None]


@dataclass(frozen=True)
class Scope:
    """An OAuth scope a plugin declares: what a token may be allowed to do."""

    name: str
    description: str


@dataclass(frozen=True)
class Permission:
    """A right a user holds through a role; ``roles`` are the builtin roles that hold it."""

    name: str
    description: str
    roles: tuple[str, ...] = ("admin",)


@hookspec
def mars_api_blueprints() -> Sequence[Blueprint]:
    """Return the flask-smorest blueprints of the plugin's HTTP API.

    Each blueprint is mounted under ``/api/v1`` followed by its own ``url_prefix``, and its
    operations appear in the OpenAPI document. Every operation needs a unique
    ``operationId``, a tag (the blueprint's name) and a summary (the view's docstring).

    :return: the blueprints; an empty sequence when the plugin has no API.

    .. versionadded:: 0.1
    """


@hookspec
def mars_migrations_location() -> str | None:
    """Return the folder holding the plugin's Alembic revisions.

    The plugin's revisions form their own Alembic branch: the first one has
    ``branch_labels = ("<plugin name>",)``, ``down_revision = None`` and
    ``depends_on`` the core revision it needs. ``mars db upgrade`` applies every head.

    :return: an absolute path, or ``None`` when the plugin keeps no tables.

    .. versionadded:: 0.1
    """


@hookspec
def mars_cli_commands() -> Sequence[click.Command]:
    """Return click commands (or groups) to add to the ``mars`` command.

    They run inside an application context, so services and models can be used as in a
    request. Name a group after the plugin (``mars projects ...``).

    :return: the commands; an empty sequence when there are none.

    .. versionadded:: 0.1
    """


@hookspec
def mars_settings_schema() -> type[ma.Schema] | None:
    """Return the marshmallow schema of the plugin's settings section.

    Called once for each plugin that implements it. The section is read from the config
    file's ``[plugins.<name>]`` table, ``MARS_<NAME>__<KEY>`` environment variables and the
    ``PLUGINS`` mapping given to ``create_app``; it is validated at start (unknown keys are
    errors) and read back with :func:`mars_server.plugin_settings`.

    :return: a :class:`marshmallow.Schema` subclass whose fields have ``load_default``\\ s,
        or ``None``.

    .. versionadded:: 0.1
    """


@hookspec
def mars_health_checks() -> Sequence[HealthCheck]:
    """Return the readiness checks that ``/readyz`` runs besides the core's own.

    A check should be cheap (it runs on every probe) and bounded in time.

    :return: :class:`HealthCheck` objects with names unique across plugins.

    .. versionadded:: 0.1
    """


@hookspec
def mars_app_ready(app: Flask) -> None:
    """Called once the application is fully built, before it serves a request.

    :param app: the configured Flask application, with every plugin loaded.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def mars_actor_from_request(request: Request) -> Actor | None:
    """Say who sent ``request``, from its credentials (``firstresult``).

    The core's security layer asks this once per request, and only when a view needs it.
    Return ``None`` when the request carries no credentials this plugin understands (another
    plugin may). Raise :class:`mars_server.http.security.AuthenticationFailed` when it does
    understand them and they are wrong, expired or revoked. A request whose
    ``Authorization`` header no plugin accepts is answered 401.

    :param request: the Flask request.
    :return: the :class:`~mars_server.http.security.Actor`, or ``None``.

    .. versionadded:: 0.1
    """


@hookspec
def mars_scopes() -> Sequence[Scope]:
    """Return the OAuth scopes the plugin's API needs.

    They appear in the OpenAPI security schemes and the authorization server's metadata;
    apps and tokens can only be granted declared scopes.

    :return: :class:`Scope` objects; names are ``area:verb`` (``projects:read``).

    .. versionadded:: 0.1
    """


@hookspec
def mars_permissions() -> Sequence[Permission]:
    """Return the permissions the plugin checks, and which builtin roles hold them.

    :return: :class:`Permission` objects; ``admin`` holds every permission anyway.

    .. versionadded:: 0.1
    """


@dataclass(frozen=True)
class UserInfo:
    """What any plugin may know of a user: enough to show and to check they exist."""

    id: str
    display_name: str
    active: bool


@hookspec(firstresult=True)
def mars_user_info(user_id: str) -> UserInfo | None:
    """Describe the user ``user_id`` (``firstresult``), for plugins that refer to users.

    Plugins keep user ids, never another plugin's tables; this is how they check that an id
    names a user, and show their name. The builtin ``auth`` plugin answers.

    :param user_id: a user's public id.
    :return: a :class:`UserInfo`, or ``None`` when no such user exists.

    .. versionadded:: 0.1
    """
