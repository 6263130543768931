"""Text search for lists (``?q=``): PostgreSQL's full-text search, or SQLite's FTS5, behind
one helper.

A list that offers a search names the columns to search, and its plugin's migration makes
the index (docs/plugins.md#text-search):

- PostgreSQL: a GIN index on :func:`document_sql` of the columns;
- SQLite: an FTS5 table ``<table>_fts`` over the columns (external content, ``content_rowid
  = rowid``), kept in step by triggers.

Both read the words the same way: lower-cased, split on anything but letters and digits;
every word must match, and ``"a phrase"`` matches as one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mars_server.db import db

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import InstrumentedAttribute

#: PostgreSQL's text search configuration: no stemming and no stop words, as SQLite's.
CONFIGURATION = "simple"
_TERMS = re.compile(r'"([^"]*)"|(\S+)')


def is_search_index(name: str | None, kind: str) -> bool:
    """Whether a database object is a search index (not a model): the FTS5 table
    ``<table>_fts`` and its shadow tables, or a PostgreSQL ``ix_<table>_search``."""
    name = name or ""
    if kind == "table":
        return bool(re.search(r"_fts(_(data|idx|docsize|config|content))?$", name))
    return kind == "index" and name.startswith("ix_") and name.endswith("_search")


def document_sql(columns: Sequence[str]) -> str:
    """The SQL of the searched text, as PostgreSQL's index and queries must both spell it:
    ``to_tsvector('simple', coalesce(a, '') || ' ' || coalesce(b, ''))``."""
    joined = " || ' ' || ".join(f"coalesce({column}, '')" for column in columns)
    return f"to_tsvector('{CONFIGURATION}', {joined})"


def terms(text: str) -> list[str]:
    """What ``text`` asks for: its words, and its ``"quoted phrases"`` as one term each, in
    letters and digits only. No other syntax is read (``-``, ``OR``, ``*``, ``NEAR``...)."""
    found = []
    for phrase, word in _TERMS.findall(text):
        words = re.findall(r"\w+", phrase or word)
        if words:
            found.append(" ".join(words))
    return found


def fts5_query(text: str) -> str:
    """``text`` as an FTS5 query that means what the words say: each term quoted (FTS5's
    operators and column filters are never read from the user), all needed."""
    return " AND ".join(f'"{term}"' for term in terms(text))


def matches(columns: Sequence[InstrumentedAttribute[str]], text: str) -> ColumnElement[bool]:
    """The condition that a row's ``columns`` hold every word of ``text``: for
    ``paginate(..., search=lambda q: matches(COLUMNS, q))``."""
    table = columns[0].class_.__table__
    wanted = terms(text)
    if not wanted:  # nothing to look for but punctuation: nothing matches
        return sa.false()
    if db.session.get_bind().dialect.name == "postgresql":
        names = [f"{table.name}.{column.key}" for column in columns]
        configuration: ColumnElement[str] = sa.literal_column(f"'{CONFIGURATION}'")
        tsquery: ColumnElement[Any] = sa.func.phraseto_tsquery(configuration, wanted[0])
        for term in wanted[1:]:  # every term: tsquery's AND
            tsquery = tsquery.op("&&")(sa.func.phraseto_tsquery(configuration, term))
        return sa.literal_column(document_sql(names)).op("@@")(tsquery)
    query = fts5_query(text)
    fts = sa.table(f"{table.name}_fts", sa.column("rowid"))
    found = sa.select(fts.c.rowid).where(sa.literal_column(f"{table.name}_fts").op("MATCH")(query))
    return sa.literal_column(f"{table.name}.rowid").in_(found)
