"""Alembic for MARS: the core's revisions and every plugin's branch, upgraded together."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import flask_migrate
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def script_heads() -> set[str]:
    """The head revision of every branch (core and plugins), cached per app."""
    state = current_app.extensions["mars"]
    heads = getattr(state, "_script_heads", None)
    if heads is None:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        state._script_heads = heads
    return heads


def database_heads() -> set[str]:
    with db.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def missing_heads() -> set[str]:
    """Script heads the database has not reached (a branch's ancestors count as reached)."""
    script = ScriptDirectory.from_config(alembic_config())
    applied = {rev.revision for rev in script.iterate_revisions(tuple(database_heads()), "base")}
    return script_heads() - applied


def pending() -> bool:
    return bool(missing_heads())


def upgrade(revision: str = "heads") -> None:
    flask_migrate.upgrade(revision=revision)
