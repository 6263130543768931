"""Alembic for MARS: the core's revisions and every plugin's branch, upgraded together."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import click
import flask_migrate
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from flask import current_app

from mars_server.db import db
from mars_server.extensions import migrate
from mars_server.plugins import builtin_names
from mars_server.search import is_search_index
from mars_server.state import mars_state

if TYPE_CHECKING:
    from alembic.config import Config


@migrate.configure
def _version_locations(config: Config) -> Config:
    """Point Alembic at the core's versions folder and each enabled plugin's."""
    core = os.path.join(config.get_main_option("script_location") or "", "versions")
    locations = [core, *mars_state().migrations_locations]
    config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


def alembic_config() -> Config:
    return current_app.extensions["migrate"].migrate.get_config()


def script_directory() -> ScriptDirectory:
    """Every revision of the core and the plugins, read once per app."""
    state = mars_state()
    if state.script_directory is None:
        state.script_directory = ScriptDirectory.from_config(alembic_config())
    return state.script_directory


def script_heads() -> set[str]:
    """The head revision of every branch (core and plugins)."""
    return set(script_directory().get_heads())


def database_heads() -> set[str]:
    with db.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (ResolutionError, CommandError):
        return False


#: Every revision id is ``<branch>_<NNNN>``; the branch is ``core`` or a plugin's name.
REVISION_ID = re.compile(r"(?P<branch>[a-z][a-z0-9_]*?)_\d+")


def revision_branch(revision: str) -> str | None:
    """The branch (plugin) a revision id names, or ``None`` if it is not ``<name>_<NNNN>``."""
    match = REVISION_ID.fullmatch(revision)
    return match["branch"] if match else None


class UnknownRevisions(click.ClickException):
    """The database holds revisions no code here knows and no newer release explains.

    A :class:`click.ClickException`, so every ``mars`` command that meets it says so in one
    line; ``problems`` has one sentence per plugin (or unknown revision).
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def stray_revisions(current: set[str] | None = None) -> dict[str | None, list[str]]:
    """Database revisions this code does not know, by the plugin they name (``None``: they
    name none), leaving out those of the core's branches and of installed plugins: those come
    from a newer release (see :func:`missing_heads`)."""
    script = script_directory()
    installed = {"core"} | builtin_names()
    installed |= {plugin.info.name for plugin in mars_state().plugins.loaded}
    strays: dict[str | None, list[str]] = {}
    for revision in sorted(database_heads() if current is None else current):
        branch = revision_branch(revision)
        if branch not in installed and not _known(script, revision):
            strays.setdefault(branch, []).append(revision)
    return strays


def revision_problems(current: set[str] | None = None) -> list[str]:
    """One line per plugin that is gone but left revisions, and per revision naming none."""
    problems: list[str] = []
    for branch, revisions in sorted(
        stray_revisions(current).items(), key=lambda item: item[0] or ""
    ):
        if branch is None:
            problems.extend(
                f"database revision {revision!r} is unknown: no installed code has it and it "
                "names no plugin (revision ids are <plugin>_<NNNN>)"
                for revision in revisions
            )
        else:
            problems.append(
                f"plugin {branch!r} is not installed but its migrations are applied "
                f"({', '.join(revisions)}): reinstall it, or run `mars plugins purge {branch}`"
            )
    return problems


def check_revisions(current: set[str] | None = None) -> None:
    """Raise :class:`UnknownRevisions` when :func:`revision_problems` finds any."""
    problems = revision_problems(current)
    if problems:
        raise UnknownRevisions(problems)


def missing_heads() -> set[str]:
    """Script heads the database has not reached (a branch's ancestors count as reached).

    A database revision this code does not know, on the core's branches or an installed
    plugin's, was applied by a newer release: during a rolling deploy its expand migrations
    run while this release still serves, which it must survive (docs/deployment.md). Each
    such head stands for a branch the newer release moved past this code's head, so as many
    of this code's heads count as reached. Any other unknown revision (a plugin uninstalled
    with its migrations applied) raises :class:`UnknownRevisions`.
    """
    script = script_directory()
    current = database_heads()
    check_revisions(current)
    known = {revision for revision in current if _known(script, revision)}
    applied = {rev.revision for rev in script.iterate_revisions(tuple(known), "base")}
    missing = script_heads() - applied
    if missing and len(missing) <= len(current - known):
        return set()
    return missing


def pending() -> bool:
    return bool(missing_heads())


def upgrade(revision: str = "heads") -> None:
    check_revisions()
    flask_migrate.upgrade(revision=revision)


# -- purging a plugin ---------------------------------------------------------------------


def branch_revisions(name: str) -> list[str]:
    """The database's revisions on the branch labelled ``name`` that this code knows."""
    script = script_directory()
    return sorted(
        revision
        for revision in database_heads()
        if _known(script, revision) and name in script.get_revision(revision).branch_labels
    )


def downgrade_branch(name: str) -> None:
    """Run the downgrades of branch ``name`` down to its base (its tables are dropped)."""
    from alembic import command

    command.downgrade(alembic_config(), f"{name}@base")


def forget_revisions(name: str) -> list[str]:
    """Delete, in the session's transaction, the ``alembic_version`` rows of plugin ``name``
    that no code here knows (its code is gone); return them."""
    strays = stray_revisions().get(name, [])
    if strays:
        version = sa.table("alembic_version", sa.column("version_num", sa.String))
        db.session.execute(sa.delete(version).where(version.c.version_num.in_(strays)))
    return strays


def undeclared_tables() -> list[str]:
    """The database's tables that no model of this MARS declares (Alembic's own left out)."""
    with db.engine.connect() as connection:
        names = set(sa.inspect(connection).get_table_names())
    declared = set(db.metadata.tables) | {"alembic_version"}
    # A plugin's text-search index (mars_server.search) is its own, though no model's.
    return sorted(n for n in names - declared if not is_search_index(n, "table"))
