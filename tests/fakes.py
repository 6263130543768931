"""Plugins that the plugin-system tests install through fake entry points."""

from __future__ import annotations

from types import SimpleNamespace

import click
import marshmallow as ma

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import BackupCheck, BackupCheckFailed, HealthCheck, SignInOption
from tests import graphql_plugin, legacy_plugin

ready_calls: list[object] = []
#: a plugin with a deprecated operation (test_deprecation.py)
Legacy = legacy_plugin
#: a plugin that adds to the GraphQL schema (test_graphql.py)
Stars = graphql_plugin


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

    @hookimpl
    def mars_backup_checks(self) -> list[BackupCheck]:
        import sqlalchemy as sa

        def active(connection: sa.Connection) -> int:
            query = sa.text("SELECT count(*) FROM auth_users WHERE status = 'active'")
            return int(connection.scalar(query) or 0)

        def verify(connection: sa.Connection, facts: dict[str, object]) -> str:
            if active(connection) != facts["active_users"]:
                raise BackupCheckFailed(f"{active(connection)} active users, not {facts}")
            return f"{facts['active_users']} active users"

        return [BackupCheck("good", lambda c: {"active_users": active(c)}, verify)]


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


# --- Events and jobs -------------------------------------------------------------------------

from mars_server.hookspecs import (  # noqa: E402
    EventHandler,
    EventType,
    NotificationDraft,
    Schedule,
    Task,
)


class ThingSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    owner_id = ma.fields.String()


class Events:
    """A plugin that emits ``thing.happened`` and records what reaches its handlers and tasks.

    ``calls`` survives the app (module state); ``plan`` says how the next task runs fail.
    """

    MARS_PLUGIN = PluginInfo(name="eventful", version="1.0", requires=">=0.1")

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.failures: list[Exception] = []
        self.audit: list[object] = []
        self.with_schedule = False

    def reset(self) -> None:
        self.with_schedule = False
        self.calls.clear()
        self.failures.clear()
        self.audit.clear()

    def _handle(self, event: object) -> None:
        self.calls.append(("handled", event))

    def _other(self, event: object) -> None:
        self.calls.append(("everything", event))

    def _run(self, **kwargs: object) -> None:
        from mars_server.events import current_job

        self.calls.append(("ran", {**kwargs, "attempt": current_job().attempt}))  # type: ignore[union-attr]
        if self.failures:
            raise self.failures.pop(0)

    @hookimpl
    def mars_event_types(self) -> list[EventType]:
        return [
            EventType("thing.happened", "Something happened to a thing.", ThingSchema, scope=None),
            EventType("thing.ignored", "Nobody listens to this.", ThingSchema, scope=None),
        ]

    @hookimpl
    def mars_event_handlers(self) -> list[EventHandler]:
        return [
            EventHandler("eventful.record", ("thing.happened",), self._handle),
            EventHandler("eventful.everything", ("*",), self._other, max_attempts=3),
        ]

    def _sleep_first(self, seconds: float) -> None:
        """Sleep on the first attempt only: a worker killed meanwhile leaves the job leased."""
        import time

        from mars_server.events import current_job

        job = current_job()
        assert job is not None
        if job.attempt == 1:
            time.sleep(seconds)
        self.calls.append(("slept", job.attempt))

    @hookimpl
    def mars_tasks(self) -> list[Task]:
        return [
            Task("eventful.sleep", self._sleep_first, max_attempts=3, timeout=2),
            Task("eventful.work", self._run, max_attempts=3),
            Task("eventful.scheduled", self._run, max_attempts=3, retry_delays=(5, 60), timeout=30),
        ]

    @hookimpl
    def mars_schedules(self) -> list[Schedule]:
        import datetime as dt

        if not self.with_schedule:
            return []
        return [Schedule("eventful.every_minute", "eventful.scheduled", dt.timedelta(minutes=1))]

    @hookimpl
    def mars_notifications(self, event: object) -> list[NotificationDraft]:
        payload = event.payload  # type: ignore[attr-defined]
        if event.type != "thing.happened" or "owner_id" not in payload:  # type: ignore[attr-defined]
            return []
        return [NotificationDraft(payload["owner_id"], f"{payload['name']} happened", "Details.")]

    @hookimpl
    def mars_audit_entry(self, entry: object) -> None:
        self.audit.append(entry)


events = Events()


# --- Uninstalling and purging --------------------------------------------------------------

#: The revisions of ``gadgets``: its own branch, two tables, no models (its tables stay out of
#: the core's metadata, so other tests never see them).
GADGETS_REVISIONS = {
    "gadgets_0001_gadgets.py": '''
"""Gadgets."""
import sqlalchemy as sa
from alembic import op

revision = "gadgets_0001"
down_revision = None
branch_labels = ("gadgets",)
depends_on = "core_0001"


def upgrade():
    op.create_table(
        "gadgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("gadgets")
''',
    "gadgets_0002_gadget_parts.py": '''
"""Gadget parts."""
import sqlalchemy as sa
from alembic import op

revision = "gadgets_0002"
down_revision = "gadgets_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "gadget_parts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("gadget_id", sa.String(40), nullable=False),
    )


def downgrade():
    op.drop_table("gadget_parts")
''',
}


class Gadgets:
    """A plugin with its own migration branch and event types, one of them not ``gadgets.*``.

    Its revisions are written by :meth:`write_revisions` into a folder the test owns.
    """

    MARS_PLUGIN = PluginInfo(name="gadgets", version="2.0", requires=">=0.1")

    def __init__(self) -> None:
        self.versions: str | None = None

    def write_revisions(self, folder: object) -> str:
        from pathlib import Path

        path = Path(str(folder))
        path.mkdir(parents=True, exist_ok=True)
        for filename, source in GADGETS_REVISIONS.items():
            (path / filename).write_text(source.lstrip())
        self.versions = str(path)
        return self.versions

    @hookimpl
    def mars_migrations_location(self) -> str | None:
        return self.versions

    @hookimpl
    def mars_event_types(self) -> list[EventType]:
        return [
            EventType("gadgets.made", "A gadget was made.", ThingSchema, scope=None),
            EventType("gizmo.spun", "A gizmo spun.", ThingSchema, scope=None),
        ]


gadgets = Gadgets()


class Keeper:
    """An outside plugin that keeps something of other plugins: ``mars plugins purge`` asks it
    to forget it. ``calls`` records the arguments; ``fail`` makes it raise."""

    MARS_PLUGIN = PluginInfo(name="keeper", version="1.0", requires=">=0.1")

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], bool]] = []
        self.fail = False

    @hookimpl
    def mars_plugin_purged(self, name: str, event_types: list[str], dry_run: bool) -> list[str]:
        self.calls.append((name, list(event_types), dry_run))
        if self.fail:
            raise RuntimeError("its store is read-only")
        return [f"its notes on {name}"]


keeper = Keeper()


class Unmarked:
    """Hook-named functions without ``@hookimpl``: never called, so MARS warns."""

    MARS_PLUGIN = PluginInfo(name="unmarked", version="1.0", requires=">=0.1")

    def mars_scopes(self) -> list[object]:
        return []

    def mars_lost_helper(self) -> None:
        return None


unmarked = Unmarked()


SLOPPY_SOURCE = """
from mars_server import PluginInfo, hookimpl
from mars_server.testing import settings_for_tests as mars_settings  # imported: not its own

MARS_PLUGIN = PluginInfo(name="sloppy", version="1.0", requires=">=0.1")


def mars_event_types():  # not marked: never called
    return []


@hookimpl
def mars_scopes():
    return []
"""


def _module(name: str, source: str) -> object:
    import types

    module = types.ModuleType(name)
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


#: A plugin that is a module, as entry points usually load.
sloppy_module = _module("sloppy_plugin", SLOPPY_SOURCE)


# -- plugins that need plugins (requires_plugins) --------------------------------------------


def _needing(name: str, *needs: str) -> _Plugin:
    return _Plugin(MARS_PLUGIN=PluginInfo(name, "0.1", ">=0.1", requires_plugins=list(needs)))


needs_good = _needing("needsgood", "good>=1.0")
needs_newer_good = _needing("needsnewer", "good>=2")
needs_nothing_there = _needing("needsghost", "ghost")
needs_needs_good = _needing("needschain", "needsgood")
needs_badly = _needing("needsbadly", "good >= = 1")


# -- a plugin's declared api module --------------------------------------------------------------

offers_api = _Plugin(MARS_PLUGIN=PluginInfo("offers", "0.1", ">=0.1", api="tests.fakes"))
offers_missing_api = _Plugin(
    MARS_PLUGIN=PluginInfo("offersnot", "0.1", ">=0.1", api="tests.no_such_module")
)


class Listener:
    """A plugin that only listens: it records the ``project.*`` events its handler gets."""

    MARS_PLUGIN = PluginInfo(name="listener", version="1.0", requires=">=0.1")

    def __init__(self) -> None:
        self.heard: list[str] = []

    def _hear(self, event: object) -> None:
        self.heard.append(event.type)  # type: ignore[attr-defined]

    @hookimpl
    def mars_event_handlers(self) -> list[EventHandler]:
        return [EventHandler("listener.hear", ("project.created", "project.deleted"), self._hear)]


listener = Listener()


class Door:
    """Another way to sign in: a button on the sign-in page, and a domain it keeps."""

    MARS_PLUGIN = PluginInfo(name="door", version="1.0", requires=">=0.1")

    @hookimpl
    def mars_sign_in_options(self, next_url: str, binding: str) -> list[SignInOption]:
        from urllib.parse import urlencode

        query = urlencode({"next": next_url, "binding": binding})
        return [SignInOption("Sign in with the Door", f"/door/start?{query}")]

    @hookimpl
    def mars_password_sign_in_refused(self, email: str) -> str | None:
        if email.lower().endswith("@door.example"):
            return "People of door.example sign in with the Door."
        return None


door = Door()
