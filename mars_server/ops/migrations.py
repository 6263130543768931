"""Alembic for MARS: the core's revisions and every plugin's branch, upgraded together."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import flask_migrate
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from flask import current_app

from mars_server.db import db
from mars_server.extensions import migrate

if TYPE_CHECKING:
    from alembic.config import Config


@migrate.configure
def _version_locations(config: Config) -> Config:
    """Point Alembic at the core's versions folder and each enabled plugin's."""
    core = os.path.join(config.get_main_option("script_location") or "", "versions")
    locations = [core, *current_app.extensions["mars"].migrations_locations]
    config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


def alembic_config() -> Config:
    return current_app.extensions["migrate"].migrate.get_config()


def script_directory() -> ScriptDirectory:
    """Every revision of the core and the plugins, read once per app."""
    state = current_app.extensions["mars"]
    script = getattr(state, "_script_directory", None)
    if script is None:
        script = ScriptDirectory.from_config(alembic_config())
        state._script_directory = script
    return script


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


def missing_heads() -> set[str]:
    """Script heads the database has not reached (a branch's ancestors count as reached).

    A database revision this code does not know was applied by a newer release: during a
    rolling deploy its expand migrations run while this release still serves, which it must
    survive (docs/deployment.md). Each unknown head stands for a branch the newer release
    moved past this code's head, so as many of this code's heads count as reached.
    """
    script = script_directory()
    current = database_heads()
    known = {revision for revision in current if _known(script, revision)}
    applied = {rev.revision for rev in script.iterate_revisions(tuple(known), "base")}
    missing = script_heads() - applied
    if missing and len(missing) <= len(current - known):
        return set()
    return missing


def pending() -> bool:
    return bool(missing_heads())


def upgrade(revision: str = "heads") -> None:
    flask_migrate.upgrade(revision=revision)
