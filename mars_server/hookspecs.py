"""Every hook a MARS plugin may implement: this module *is* the plugin API.

A plugin is a module (or object) with a ``MARS_PLUGIN`` :class:`~mars_server.PluginInfo`
and functions decorated with :data:`mars_server.hookimpl` whose names are those below.
Hooks are always called with keyword arguments; an implementation may accept any subset
of the documented parameters. ``docs/plugins.md`` documents each one with its signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Mapping, Sequence

    import click
    import flask
    import marshmallow as ma
    import sqlalchemy as sa
    from apispec import APISpec
    from flask import Flask, Request
    from flask_smorest import Blueprint

    from mars_server.events import Event
    from mars_server.http.security import Actor

hookspec = pluggy.HookspecMarker("mars")


@dataclass(frozen=True)
class HealthCheck:
    """A named readiness check: ``check()`` returns on success and raises on failure.

    ``/readyz`` answers the check as ``"failed"`` and the exception goes to the log, for
    operators; keep secrets out of its message all the same.
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
    #: Where to e-mail them (notifications); ``None`` when unknown.
    email: str | None = None


@hookspec(firstresult=True)
def mars_user_info(user_id: str) -> UserInfo | None:
    """Describe the user ``user_id`` (``firstresult``), for plugins that refer to users.

    Plugins keep user ids, never another plugin's tables; this is how they check that an id
    names a user, and show their name. The builtin ``auth`` plugin answers.

    :param user_id: a user's public id.
    :return: a :class:`UserInfo`, or ``None`` when no such user exists.

    .. versionadded:: 0.1
    """


# --- Signing in another way: single sign-on and the like (0.1) ---------------------------------


@dataclass(frozen=True)
class SignInOption:
    """Another way to sign in, shown as a button on MARS's sign-in page."""

    #: what the button says: "Sign in with Example Corp"
    label: str
    #: where it leads (a GET): the plugin's own page, which starts the sign-in
    url: str


@hookspec
def mars_sign_in_options(next_url: str, binding: str) -> Sequence[SignInOption]:
    """Return the other ways to sign in that the sign-in page shows beside the password.

    When the person has signed in another way, the plugin hands them back with
    :func:`mars_external_sign_in`, passing ``next_url`` and ``binding`` on unchanged.

    :param next_url: the path of the sign-in page's request (an ``/oauth/authorize`` request).
    :param binding: an opaque value that ties the sign-in to the browser that asked for it.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def mars_password_sign_in_refused(email: str) -> str | None:
    """Say why ``email`` may not sign in with a password (``firstresult``), or ``None``.

    For example: its domain signs in with the organisation's identity provider only. The
    sentence is shown on the sign-in page instead of checking the password.

    .. versionadded:: 0.1
    """


@dataclass(frozen=True)
class ExternalIdentity:
    """A person another system vouches for (an identity provider), to sign in to MARS."""

    #: how they signed in, for the audit log: ``"sso:corp"``
    method: str
    email: str
    #: the other system asserts that the person owns ``email``: only then is an existing
    #: account with that address theirs
    email_verified: bool
    display_name: str = ""
    #: the account this identity was linked to before, if the plugin remembers one
    user_id: str | None = None
    #: whether an account may be made for a new address (just in time)
    create: bool = False
    #: the roles the plugin governs, each granted (True) or taken away (False)
    roles: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ExternalSignIn:
    """What :func:`mars_external_sign_in` decided."""

    user_id: str | None = None
    #: a new account was made for the person
    created: bool = False
    #: where to send the browser: it signs in there and goes on to ``next_url`` (once, soon)
    url: str | None = None
    #: why the person cannot sign in, a sentence for them; nothing else is set then
    refused: str | None = None


@hookspec(firstresult=True)
def mars_external_sign_in(
    identity: ExternalIdentity, next_url: str | None, binding: str | None
) -> ExternalSignIn | None:
    """Sign in the person ``identity`` describes (``firstresult``): find their account (or
    make it), apply ``roles``, and record the sign-in. The builtin ``auth`` plugin answers.

    Writes in the caller's transaction, which the caller commits (on a refusal too: the
    refusal is audited).

    :param identity: who the other system says the person is.
    :param next_url: and ``binding``: as :func:`mars_sign_in_options` gave them, to sign in
        the browser and continue (``ExternalSignIn.url``); ``None`` only finds the account.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def mars_confirm_password(user_id: str, password: str, address: str | None) -> bool | None:
    """Check that ``password`` is the current password of ``user_id`` (``firstresult``), before
    a change that gives a new way in to the account (linking a single sign-on identity): a
    token alone must not be enough. The builtin ``auth`` plugin answers; a wrong password
    counts as a failed sign-in, and past the limits it raises a 429 problem.

    :param address: the caller's IP address, for the per-address limit.
    :return: whether it is the password (``False`` for an account without one).

    .. versionadded:: 0.1
    """


# --- What a plugin adds to the HTTP surface beyond its API: OpenAPI, pages, CORS (0.1) ----------


@dataclass(frozen=True)
class SecurityScheme:
    """A kind of credential a plugin accepts (in :func:`mars_actor_from_request`), as the
    OpenAPI document describes it under ``components.securitySchemes``.

    Every operation guarded by ``Blueprint.requires`` lists every contributed scheme: the
    core asks the same hook for every request, so any credential a plugin accepts is accepted
    by every such operation. An ``oauth2`` or ``openIdConnect`` scheme is listed with the
    operation's scopes; any other (a bearer token) with ``[]``, as OpenAPI tools expect: its
    description should say that the scopes listed under ``oauth2`` apply to it.

    :param name: the scheme's key, e.g. ``personalAccessToken``; unique across plugins.
    :param definition: the OpenAPI Security Scheme Object (``type``, ``description``,
        ``scheme``, ``flows``...), as it appears in the document.
    """

    name: str
    definition: Mapping[str, Any]


@hookspec
def mars_security_schemes(scopes: Mapping[str, str]) -> Sequence[SecurityScheme]:
    """Return the OpenAPI security schemes of the credentials the plugin accepts.

    Called once, when the OpenAPI document is set up, before any operation is added. The
    builtin ``auth`` plugin contributes ``oauth2`` (its ``/oauth/...`` flows) and
    ``personalAccessToken``.

    :param scopes: every scope the plugins declare (:func:`mars_scopes`), name to
        description, for the ``scopes`` of an OAuth 2 flow.
    :return: :class:`SecurityScheme` objects; an empty sequence when the plugin accepts no
        credentials of its own.

    .. versionadded:: 0.1
    """


@hookspec
def mars_openapi(spec: APISpec, event_types: Mapping[str, EventType]) -> None:
    """Add to the API's OpenAPI document what no operation of a blueprint says.

    Called once per application, in the order the plugins were loaded, before the API
    blueprints' operations are added (so they may refer to what is added here): add
    top-level sections (``spec.options["webhooks"]``), components
    (``spec.components.schema(...)``), or ``x-`` extensions. The builtin ``webhooks`` plugin
    publishes the event types in the ``webhooks`` section. Change nothing the core's
    conventions put there (problem responses, security schemes).

    :param spec: the :class:`apispec.APISpec` the document is built from.
    :param event_types: every event type the enabled plugins declare, by name.

    .. versionadded:: 0.1
    """


@hookspec
def mars_blueprints() -> Sequence[flask.Blueprint]:
    """Return Flask blueprints to mount as they are, outside ``/api/v1``.

    For what is not part of the API: server-rendered pages, a protocol's own endpoints
    (``/oauth/token``, ``/.well-known/...``). Their routes keep the paths they declare (and
    the blueprint's ``url_prefix``); they are not in the OpenAPI document and get none of
    the API's conventions but the security headers. A route under ``/api`` stops start-up:
    the API is :func:`mars_api_blueprints`'.

    :return: :class:`flask.Blueprint` objects with names unique in the app.

    .. versionadded:: 0.1
    """


@hookspec
def mars_cors_paths() -> Sequence[str]:
    """Return the paths outside ``/api`` that browser apps call from another origin.

    They get the same CORS answers as the API, for ``MARS_CORS_ORIGINS``: the builtin
    ``auth`` plugin declares ``/oauth/token``, ``/oauth/revoke`` and
    ``/.well-known/oauth-authorization-server``. Declare endpoints meant for scripts, never
    pages a person signs in on.

    :return: exact paths (``/oauth/token``): they start with ``/`` and hold no pattern
        characters (``*?[]()^$\\``).

    .. versionadded:: 0.1
    """


@dataclass(frozen=True)
class GraphQLPart:
    """What a plugin adds to the GraphQL schema (:func:`mars_graphql`).

    :param type_defs: SDL: the plugin's types, and ``extend type Query`` / ``extend type
        Mutation`` / ``extend type Me`` (or any other plugin's type) with its fields. Every
        type and field has a description: the SDL is the GraphQL API's documentation.
    :param bindables: Ariadne bindables (``ObjectType``, ``EnumType``, ``ScalarType``...)
        with the resolvers, which call the plugin's services, as its REST views do.
    """

    type_defs: str
    bindables: Sequence[Any] = ()


@hookspec
def mars_graphql() -> GraphQLPart | None:
    """Return the plugin's part of the GraphQL schema served at ``/api/v1/graphql``.

    Called once per application, in the order the plugins were loaded; the parts are merged
    into one schema, and a part that does not fit (a type defined twice, an extension of a
    type nobody defines, a resolver for a field no SDL declares) stops start-up naming the
    plugin. The core defines ``Query.me``, ``Me``, ``PageInfo``, ``DateTime`` and the
    ``@cost`` directive; ``mars_server.graphql`` has the helpers resolvers use (``requires``,
    ``connection``, ``page_args``, ``batch``). See docs/graphql.md.

    :return: a :class:`GraphQLPart`, or ``None`` to add nothing.

    .. versionadded:: 0.3
    """


# --- Events, jobs, notifications, audit (0.2) ---------------------------------------------------


@dataclass(frozen=True)
class EventType:
    """An event a plugin emits with :func:`mars_server.events.emit`.

    :param name: ``<noun>.<past participle>``, e.g. ``project.created``; unique across plugins.
    :param description: one sentence for the OpenAPI document's ``webhooks`` section.
    :param payload: the marshmallow schema of the payload: ``emit`` dumps the payload with it,
        webhook subscribers receive it as ``data``, and it is published in OpenAPI.
    :param scope: the scope whose holder may read what the payload shows (``projects:read``
        for a project's events): a webhook endpoint subscribes to the event only through a
        token that has it, and its delivery log shows the payload only to such a token, so
        a subscription never shows more than its creator may read. Required, so that no
        event is left open by forgetting: ``None`` says, on purpose, that any signed-in
        user may read every payload of this type.

    .. versionchanged:: 0.3 ``scope``, required.
    """

    name: str
    description: str
    payload: type[ma.Schema]
    scope: str | None


@dataclass(frozen=True)
class EventHandler:
    """Runs, as a background job, for every committed event of the given types.

    Delivery is at least once: ``handle`` may see the same event again after a crash, and
    must be idempotent by ``event.id``. Its database work commits with the job's completion.

    The relay gives a handler the events of one dispatch in one job, up to ``batch`` of
    them, in the order they happened: ``handle_many`` gets them at once (one query for all
    of them instead of one per event), or else ``handle`` is called for each. When such a
    job fails, nothing it wrote is kept and each of its events is retried as a job of its
    own, so one event that cannot be handled holds back no other.

    :param name: unique, e.g. ``webhooks.fan_out``; with an event id it makes the job's key.
    :param event_types: the event names it wants, or ``("*",)`` for every event.
    :param handle_many: handles a list of events at once; optional.
    :param batch: the most events one job carries; ``1`` for a job per event.

    .. versionchanged:: 0.2 ``handle_many`` and ``batch``.
    """

    name: str
    event_types: tuple[str, ...]
    handle: Callable[[Event], None]
    max_attempts: int = 10
    handle_many: Callable[[Sequence[Event]], None] | None = None
    batch: int = 100

    def handle_all(self, events: Sequence[Event]) -> None:
        """Handle ``events``: at once with ``handle_many``, else one by one."""
        if self.handle_many is not None:
            self.handle_many(events)
        else:
            for event in events:
                self.handle(event)


@dataclass(frozen=True)
class Task:
    """A kind of background job, enqueued with :func:`mars_server.events.enqueue`.

    ``run(**kwargs)`` is called in an app context; what it writes to ``db.session`` commits
    together with the job's completion, or not at all. An exception retries the job later
    (exponential backoff with jitter, or the ``retry_delays`` schedule) until
    ``max_attempts``, after which the job is dead; raising
    :class:`mars_server.events.Retry` keeps what ``run`` wrote and retries.

    :param name: ``<plugin>.<verb>``, unique across plugins.
    :param retry_delays: seconds to wait before the 2nd, 3rd, ... attempt; the last one
        repeats. ``None``: exponential backoff from 1 s, capped at one hour.
    :param timeout: the lease, in seconds: a job still running after it (its worker died)
        is taken again by another worker.
    """

    name: str
    run: Callable[..., object]
    max_attempts: int = 10
    retry_delays: tuple[float, ...] | None = None
    timeout: float = 300.0


@dataclass(frozen=True)
class Schedule:
    """A task enqueued periodically, once per period across every worker and process."""

    name: str
    task: str
    every: dt.timedelta
    kwargs: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationDraft:
    """A notification a plugin wants a user to get about an event.

    Whether it is shown in the app, e-mailed, both or neither is the user's choice, per
    event type and channel.
    """

    user_id: str
    title: str
    body: str = ""
    link: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log, before it is written.

    :param action: what happened: an event type (``project.created``) or a security event
        (``auth.sign_in_failed``, ``auth.token_created``, ``cli.users.disable``).
    :param actor_id: the user (or OAuth client) that did it; ``cli:<login>`` from the
        command line; ``None`` when anonymous.
    :param target: the public id of the object it happened to, if any.
    :param details: what else matters; never a secret.
    """

    action: str
    actor_id: str | None
    target: str | None
    address: str | None
    user_agent: str | None
    request_id: str | None
    occurred_at: dt.datetime
    details: dict[str, object]


@hookspec
def mars_event_types() -> Sequence[EventType]:
    """Return the event types the plugin emits.

    ``emit`` refuses an undeclared type; the declared ones are published in the OpenAPI
    document's ``webhooks`` section.

    :return: :class:`EventType` objects with names unique across plugins.

    .. versionadded:: 0.2
    """


@hookspec
def mars_event_handlers() -> Sequence[EventHandler]:
    """Return the plugin's subscribers to events.

    :return: :class:`EventHandler` objects with names unique across plugins.

    .. versionadded:: 0.2
    """


@hookspec
def mars_tasks() -> Sequence[Task]:
    """Return the kinds of background job the plugin runs.

    :return: :class:`Task` objects with names unique across plugins.

    .. versionadded:: 0.2
    """


@hookspec
def mars_schedules() -> Sequence[Schedule]:
    """Return the plugin's periodic jobs.

    :return: :class:`Schedule` objects naming tasks some plugin declares.

    .. versionadded:: 0.2
    """


@hookspec
def mars_notifications(event: Event) -> Sequence[NotificationDraft]:
    """Turn an event into notifications for the users who should hear of it.

    Called once per committed event, in a background job; return an empty sequence for
    events the plugin does not know. Do not notify the user who caused the event.

    :param event: the committed event.
    :return: :class:`NotificationDraft` objects.

    .. versionadded:: 0.2
    """


@hookspec
def mars_audit_entry(entry: AuditEntry) -> None:
    """Record ``entry`` in the caller's transaction (the builtin ``audit`` plugin does).

    Called by :func:`mars_server.events.emit` for every event and by
    :func:`mars_server.events.audit` for every security event. Write with ``db.session``
    and never commit: the entry exists if and only if the change it describes committed.

    :param entry: the :class:`AuditEntry`.

    .. versionadded:: 0.2
    """


# --- Plugin lifecycle (0.3) ---------------------------------------------------------------------


@hookspec
def mars_plugin_purged(name: str, event_types: Sequence[str], dry_run: bool) -> Sequence[str]:
    """Remove what this plugin keeps about plugin ``name``, which ``mars plugins purge`` is
    purging.

    A plugin that keeps rows per event type (webhook subscriptions, notification
    preferences) deletes those of ``event_types`` and of every type named ``<name>.*``, with
    ``db.session`` in the caller's transaction, and never commits: the command commits once
    every plugin has answered, with the purge's audit entry. Only enabled plugins are called;
    the purged plugin itself is not.

    :param name: the purged plugin's name.
    :param event_types: the event types it declares; empty when its code is uninstalled,
        and then only ``<name>.*`` is known to be its own.
    :param dry_run: change nothing and say what would go: the command asks the operator
        first with these lines, and a plugin MARS knows nothing of is refused when no line
        comes back.
    :return: one line per kind of thing removed (or that would be), naming what it was,
        e.g. ``"2 notification preferences for gadgets.made"``; an empty sequence when
        there was nothing. The lines are shown to the operator and kept in the audit entry.

    .. versionadded:: 0.3
    """


# --- Backups --------------------------------------------------------------------------------------


class BackupCheckFailed(Exception):
    """Raised by :attr:`BackupCheck.verify`: the restored copy is not what was backed up. The
    message is the one line the operator reads."""


@dataclass(frozen=True)
class BackupCheck:
    """What a plugin notes about its data in a backup, and checks again in a restored copy.

    ``record(connection)`` runs when the backup is made, on the very snapshot that is backed
    up, and returns JSON-ready facts that go into the manifest (the audit log's head, for
    the audit plugin). ``verify(connection, facts)`` runs on a restored copy (``mars backup
    verify``, ``mars backup restore``) with those facts; it returns a one-line account of
    what it checked, or raises :class:`BackupCheckFailed`. Both only read.
    """

    name: str
    record: Callable[[sa.Connection], dict[str, Any]]
    verify: Callable[[sa.Connection, dict[str, Any]], str]


@hookspec
def mars_backup_checks() -> Sequence[BackupCheck]:
    """Return what ``mars backup`` records about the plugin's data, and checks after a restore.

    Row counts and migration heads are checked for every table already: a plugin adds a
    check when its data has an invariant of its own (a hash chain, a total).

    :return: :class:`BackupCheck` objects with names unique across plugins.

    .. versionadded:: 0.1
    """


# --- Personal data: inventory, export, erasure (docs/privacy.md) --------------------------------


@dataclass(frozen=True)
class PersonalData:
    """One kind of personal data a plugin stores: a line of the records of processing that
    ``mars privacy inventory`` prints for the operator.

    :param what: the data, e.g. ``"e-mail address and display name"``.
    :param where: the tables and columns, e.g. ``"auth_users.email, auth_users.display_name"``.
    :param why: the purpose, e.g. ``"to sign the person in and write to them"``.
    :param kept: for how long, e.g. ``"until the account is erased"`` or
        ``"90 days (MARS_X_RETENTION_DAYS)"``.
    :param erasure: what erasing the person does to it, e.g. ``"deleted"``,
        ``"the address and user agent removed; the entry stays in the chain"``.
    """

    what: str
    where: str
    why: str
    kept: str
    erasure: str


@hookspec
def mars_personal_data_inventory() -> Sequence[PersonalData]:
    """Declare every kind of personal data the plugin stores, why and for how long.

    A plugin whose models hold a user's id (a foreign key to ``auth_users.id``, or a column
    declared with ``info={"user_id": True}``) must declare its data here and implement
    :func:`mars_personal_data_export` and :func:`mars_personal_data_erase`; MARS's tests
    check every builtin and first-party plugin for it (``mars_server.privacy.missing_hooks``).

    .. versionadded:: 0.4
    """


@hookspec
def mars_personal_data_export(user_id: str) -> Mapping[str, Any] | None:
    """Return everything the plugin stores about ``user_id``, JSON-ready, for the person's
    export (``POST /api/v1/me/export``, ``mars users export``): it becomes ``<plugin>.json``
    in the ZIP. Never a secret (hashes and sealed values left out: say that they exist);
    ``None`` or an empty mapping when the plugin has nothing.

    .. versionadded:: 0.4
    """


@hookspec
def mars_personal_data_erase(user_id: str) -> Sequence[str] | None:
    """Erase what the plugin stores about ``user_id``, as documented in its inventory's
    ``erasure``: delete it, or replace personal fields where the row must stay (another
    person's record). Runs with ``db.session`` in the erasure's one transaction and never
    commits; the builtin ``auth`` plugin runs last and deletes the account itself.

    :return: one line per kind of thing erased, e.g. ``"3 projects deleted"`` (counts, never
        the data); kept in the audit entry of the erasure.

    .. versionadded:: 0.4
    """


@hookspec
def mars_account_deletion_blockers(user_id: str) -> Sequence[str] | None:
    """What stops ``user_id``'s account from being deleted now: one sentence per reason,
    telling the person what to do (``"You are the only owner of the project 'Apollo', which
    has other members: make one of them an owner first."``). Asked when deletion is
    requested (a 409 lists them) and again before the erasure runs.

    .. versionadded:: 0.4
    """
