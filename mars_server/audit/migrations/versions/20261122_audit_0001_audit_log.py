"""The audit log: append-only rows, hash-chained by the sealer.

On PostgreSQL a trigger refuses DELETE, and every UPDATE but the one that seals an unsealed
row. A superuser can still disable it (or write with ``session_replication_role = replica``):
that is what the hash chain and ``mars audit verify`` detect.

Revision ID: audit_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "audit_0001"
down_revision = None
branch_labels = ("audit",)
depends_on = "core_0002"

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION mars_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
       AND (NEW.id, NEW.occurred_at, NEW.actor_id, NEW.action, NEW.target, NEW.address,
            NEW.user_agent, NEW.request_id, NEW.details::text)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.occurred_at, OLD.actor_id, OLD.action, OLD.target, OLD.address,
            OLD.user_agent, OLD.request_id, OLD.details::text)
    THEN
        RETURN NEW;  -- sealing: seq, prev_hash and hash set once, nothing else changed
    END IF;
    RAISE EXCEPTION 'mars_audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Rows are only ever added, and sealed once.';
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER mars_audit_log_append_only
    BEFORE UPDATE OR DELETE ON mars_audit_log
    FOR EACH ROW EXECUTE FUNCTION mars_audit_log_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "mars_audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", mars_server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("address", sa.String(length=100), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mars_audit_log")),
        sa.UniqueConstraint("seq", name=op.f("uq_mars_audit_log_seq")),
    )
    with op.batch_alter_table("mars_audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_mars_audit_log_action", ["action", "id"], unique=False)
        batch_op.create_index("ix_mars_audit_log_actor", ["actor_id", "id"], unique=False)
        batch_op.create_index("ix_mars_audit_log_occurred", ["occurred_at", "id"], unique=False)
        batch_op.create_index("ix_mars_audit_log_target", ["target", "id"], unique=False)
        batch_op.create_index(
            "ix_mars_audit_log_unsealed",
            ["occurred_at", "id"],
            unique=False,
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FUNCTION)
        op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER mars_audit_log_append_only ON mars_audit_log")
        op.execute("DROP FUNCTION mars_audit_log_append_only()")
    with op.batch_alter_table("mars_audit_log", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_mars_audit_log_unsealed",
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        )
        batch_op.drop_index("ix_mars_audit_log_target")
        batch_op.drop_index("ix_mars_audit_log_occurred")
        batch_op.drop_index("ix_mars_audit_log_actor")
        batch_op.drop_index("ix_mars_audit_log_action")
    op.drop_table("mars_audit_log")
