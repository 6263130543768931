"""Alembic environment for MARS: one metadata, the core's and every plugin's revisions."""

from __future__ import annotations

from alembic import context

from mars_server.db import db
from mars_server.search import is_search_index


def _include_object(obj, name, type_, reflected, compare_to):
    # Alembic's own bookkeeping table is not a model, nor are the text-search indexes
    # (mars_server.search) that plugins' migrations make.
    if type_ == "table" and name == "alembic_version":
        return False
    return not is_search_index(name, type_)


def run_migrations_online() -> None:
    engine = db.engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=db.metadata,
            render_as_batch=engine.dialect.name == "sqlite",
            compare_type=True,
            include_object=_include_object,
        )
        with context.begin_transaction():
            if engine.dialect.name == "postgresql":
                # A migration may rewrite a big table for longer than a request may run
                # (MARS_DATABASE_STATEMENT_TIMEOUT_MS); it keeps the lock timeout, so it gives
                # up, rolled back, rather than queue every request behind its lock.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=str(db.engine.url),
        target_metadata=db.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
