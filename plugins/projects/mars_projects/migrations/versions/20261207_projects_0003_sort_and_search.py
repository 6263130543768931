"""Lists of projects sorted on name, creation or change (keyset indexes), and searched
(``?q=``): PostgreSQL's full-text index, or SQLite's FTS5 table kept in step by triggers.

Revision ID: projects_0003
Revises: projects_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = 'projects_0003'
down_revision = 'projects_0002'
branch_labels = None
depends_on = None

SORTED = {
    'ix_projects_name_id': ['name', 'id'],
    'ix_projects_created_at_id': ['created_at', 'id'],
    'ix_projects_updated_at_id': ['updated_at', 'id'],
}
#: mars_server.search.document_sql(["name", "slug", "description"]), as it was written here
DOCUMENT = (
    "to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(slug, '') || ' ' || "
    "coalesce(description, ''))"
)


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        for name, columns in SORTED.items():
            batch_op.create_index(name, columns, unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE INDEX ix_projects_search ON projects USING gin ({DOCUMENT})')
        return
    op.execute(
        "CREATE VIRTUAL TABLE projects_fts USING fts5("
        "name, slug, description, content='projects', content_rowid='rowid')"
    )
    op.execute(
        "INSERT INTO projects_fts (rowid, name, slug, description) "
        "SELECT rowid, name, slug, description FROM projects"
    )
    op.execute(
        "CREATE TRIGGER projects_fts_insert AFTER INSERT ON projects BEGIN "
        "INSERT INTO projects_fts (rowid, name, slug, description) "
        "VALUES (new.rowid, new.name, new.slug, new.description); END"
    )
    op.execute(
        "CREATE TRIGGER projects_fts_delete AFTER DELETE ON projects BEGIN "
        "INSERT INTO projects_fts (projects_fts, rowid, name, slug, description) "
        "VALUES ('delete', old.rowid, old.name, old.slug, old.description); END"
    )
    op.execute(
        "CREATE TRIGGER projects_fts_update AFTER UPDATE OF name, slug, description ON projects "
        "BEGIN "
        "INSERT INTO projects_fts (projects_fts, rowid, name, slug, description) "
        "VALUES ('delete', old.rowid, old.name, old.slug, old.description); "
        "INSERT INTO projects_fts (rowid, name, slug, description) "
        "VALUES (new.rowid, new.name, new.slug, new.description); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_projects_search')
    else:
        for trigger in ('insert', 'delete', 'update'):
            op.execute(f'DROP TRIGGER projects_fts_{trigger}')
        op.execute('DROP TABLE projects_fts')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        for name in SORTED:
            batch_op.drop_index(name)
