"""Erasable personal fields: the chain covers the address, user agent and details of new rows
through a salted digest, so a person's erasure blanks them without breaking the chain.

Revision ID: audit_0002
Revises: audit_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mars_server.db

revision = "audit_0002"
down_revision = "audit_0001"
branch_labels = None
depends_on = None


#: PostgreSQL's trigger lets two updates through: sealing (once), and an erasure (once), which
#: blanks the personal fields and the salt and changes nothing the hash covers.
APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION mars_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
       AND (NEW.id, NEW.occurred_at, NEW.actor_id, NEW.action, NEW.target, NEW.address,
            NEW.user_agent, NEW.request_id, NEW.details::text, NEW.erased_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.occurred_at, OLD.actor_id, OLD.action, OLD.target, OLD.address,
            OLD.user_agent, OLD.request_id, OLD.details::text, OLD.erased_at)
    THEN
        RETURN NEW;  -- sealing: seq, prev_hash, hash and the digest set once
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
       AND NEW.address IS NULL AND NEW.user_agent IS NULL AND NEW.details::text = '{}'
       AND NEW.personal_salt IS NULL
       AND (NEW.id, NEW.occurred_at, NEW.actor_id, NEW.action, NEW.target, NEW.request_id,
            NEW.seq, NEW.prev_hash, NEW.hash, NEW.personal_digest)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.occurred_at, OLD.actor_id, OLD.action, OLD.target, OLD.request_id,
            OLD.seq, OLD.prev_hash, OLD.hash, OLD.personal_digest)
    THEN
        RETURN NEW;  -- erasure: the personal fields blanked, nothing the chain covers changed
    END IF;
    RAISE EXCEPTION 'mars_audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Rows are only ever added, sealed once, and erased once.';
END;
$$
"""

#: audit_0001's
PREVIOUS_FUNCTION = """
CREATE OR REPLACE FUNCTION mars_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
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
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'mars_audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Rows are only ever added, and sealed once.';
END;
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("mars_audit_log") as batch:
        batch.add_column(sa.Column("personal_salt", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("personal_digest", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("erased_at", mars_server.db.UTCDateTime(timezone=True), nullable=True)
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PREVIOUS_FUNCTION)
    with op.batch_alter_table("mars_audit_log") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("personal_digest")
        batch.drop_column("personal_salt")
