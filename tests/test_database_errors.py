"""A database error never shows the values of its statement: not in a log line or a job's
last error. They may be a password's hash, a sealed secret or personal data."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from mars_server.events.jobs import _describe

SECRET = "mars_pat_do-not-show-this-anywhere"


@pytest.mark.parametrize(
    "statement",
    [
        # no such column: the parameters would be shown beside the statement
        "INSERT INTO auth_users (id, nothing) VALUES (:secret, 1)",
        # a NOT NULL violation: PostgreSQL's DETAIL shows the failing row, the value too
        "INSERT INTO auth_users (id) VALUES (:secret)",
        # a value of the wrong type: PostgreSQL's message itself quotes it (SQLite casts it)
        pytest.param(
            "SELECT * FROM auth_users WHERE created_at = CAST(:secret AS TIMESTAMP)",
            marks=pytest.mark.mars_backend("postgresql"),
        ),
    ],
)
def test_a_failed_statement_hides_its_values(app, db, caplog, statement):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(sa.exc.DBAPIError) as raised:
        db.session.execute(sa.text(statement), {"secret": SECRET})
    db.session.rollback()
    described = _describe(raised.value)  # a failed job's last error, and its log line
    assert statement.split(" WHERE")[0].split(" VALUES")[0] in described  # still helps
    assert SECRET not in described
    assert "[parameters:" not in str(raised.value)
    assert SECRET not in caplog.text
