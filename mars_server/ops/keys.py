"""Moving sealed values to the first key of ``MARS_ENCRYPTION_KEYS`` (docs/privacy.md).

Every sealed value lives in a column the models declare: a :class:`~mars_server.crypto.Sealed`
column, a text or binary column with ``info={"sealed": True}``, or a JSON column with
``info={"sealed_keys": (...)}`` naming the keys of its object that hold sealed text. Nothing
else has to be registered: a plugin's sealed columns are found in the metadata.

Rotation works in batches of short transactions while MARS serves: each value is replaced
only if it is still the one read (a value rewritten meanwhile is already under the first
key), so it can be stopped and started again at any time.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from mars_server import crypto
from mars_server.db import db
from mars_server.events import audit

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Key ids are 12 hex digits followed by ``:``.
_PREFIX = 13
LEGACY = "derived (no key id)"
BATCH = 500


@dataclass(frozen=True)
class SealedColumn:
    table: sa.Table
    column: sa.Column[Any]
    #: ``text``, ``bytes`` or ``json``
    kind: str
    json_keys: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column.name}"

    @property
    def primary_key(self) -> tuple[sa.Column[Any], ...]:
        return tuple(self.table.primary_key.columns)

    def after(self, last: tuple[Any, ...] | None) -> sa.ColumnElement[bool]:
        """Rows past ``last`` in primary-key order (keyset pagination, composite keys too)."""
        if last is None:
            return sa.true()
        return sa.tuple_(*self.primary_key) > sa.tuple_(*last)

    def row(self, key: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        return sa.and_(
            *(column == value for column, value in zip(self.primary_key, key, strict=True))
        )


def sealed_columns() -> list[SealedColumn]:
    """Every column of every loaded plugin's models that holds sealed values."""
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, crypto.Sealed) or column.info.get("sealed"):
                kind = "bytes" if isinstance(column.type, sa.LargeBinary) else "text"
                found.append(SealedColumn(table, column, kind))
            elif column.info.get("sealed_keys"):
                found.append(SealedColumn(table, column, "json", tuple(column.info["sealed_keys"])))
    return found


def _key_of(value: str) -> str:
    key_id, separator, _ = value[:_PREFIX].rpartition(":")
    return key_id if separator and len(key_id) == _PREFIX - 1 else LEGACY


def _raw(column: SealedColumn) -> sa.ColumnElement[Any]:
    """The column as stored: a ``Sealed`` column read without opening it."""
    if isinstance(column.column.type, crypto.Sealed):
        return sa.type_coerce(column.column, sa.Text())
    return column.column


def _json_values(column: SealedColumn, row_value: Any) -> Iterator[str]:
    if isinstance(row_value, dict):
        for key in column.json_keys:
            if isinstance(row_value.get(key), str):
                yield row_value[key]


def _json_pages(column: SealedColumn) -> Iterator[list[tuple[tuple[Any, ...], Any]]]:
    """The column's rows, a batch at a time: (primary key, value)."""
    width = len(column.primary_key)
    last: tuple[Any, ...] | None = None
    while True:
        query = (
            sa.select(*column.primary_key, column.column)
            .where(column.after(last))
            .order_by(*column.primary_key)
            .limit(BATCH)
        )
        rows = [(tuple(row[:width]), row[width]) for row in db.session.execute(query)]
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def census() -> dict[str, Counter[str]]:
    """How many sealed values each column holds under each key id (``LEGACY`` for values
    sealed before keyrings)."""
    counts: dict[str, Counter[str]] = {}
    for column in sealed_columns():
        counter: Counter[str] = Counter()
        if column.kind == "json":
            for page in _json_pages(column):
                for _, value in page:
                    counter.update(_key_of(sealed) for sealed in _json_values(column, value))
        else:
            raw = _raw(column)
            prefix = sa.func.substr(raw, 1, _PREFIX)
            query = sa.select(prefix, sa.func.count()).where(raw.is_not(None)).group_by(prefix)
            for head, number in db.session.execute(query):
                text = head.decode("ascii", "replace") if isinstance(head, bytes) else head
                counter[_key_of(text or "")] += number
        counts[column.name] = counter
    db.session.rollback()
    return counts


@dataclass
class Rotation:
    resealed: int = 0
    #: values under a key that is not in the keyring: they stay as they are
    unreadable: int = 0
    by_column: dict[str, int] = field(default_factory=dict)


def _not_primary(column: SealedColumn, keyring: crypto.Keyring) -> sa.ColumnElement[bool]:
    raw = _raw(column)
    prefix: Any = f"{keyring.primary}:"
    if column.kind == "bytes":
        prefix = prefix.encode("ascii")
    return sa.and_(raw.is_not(None), sa.func.substr(raw, 1, _PREFIX) != prefix)


def _reseal(keyring: crypto.Keyring, value: str, rotation: Rotation) -> str | None:
    try:
        return keyring.reseal(value)
    except crypto.InvalidToken:
        rotation.unreadable += 1
        return None


def _rotate_plain(column: SealedColumn, keyring: crypto.Keyring, rotation: Rotation) -> int:
    raw, width = _raw(column), len(column.primary_key)
    done, last = 0, None
    while True:
        query = (
            sa.select(*column.primary_key, raw)
            .where(_not_primary(column, keyring), column.after(last))
            .order_by(*column.primary_key)
            .limit(BATCH)
        )
        rows = [(tuple(row[:width]), row[width]) for row in db.session.execute(query)]
        for key, value in rows:
            text = value.decode("ascii") if isinstance(value, bytes) else value
            new = _reseal(keyring, text, rotation)
            if new is None:
                continue
            stored: Any = new.encode("ascii") if column.kind == "bytes" else new
            result = db.session.execute(
                sa.update(column.table)
                .where(column.row(key), raw == value)
                .values({column.column.name: sa.type_coerce(stored, raw.type)})
            )
            # 0: rewritten meanwhile, so already under the first key
            done += result.rowcount  # type: ignore[attr-defined]
        db.session.commit()
        if len(rows) < BATCH:
            return done
        last = rows[-1][0]


def _rotate_json(column: SealedColumn, keyring: crypto.Keyring, rotation: Rotation) -> int:
    done = 0
    for page in _json_pages(column):
        for key, value in page:
            if not isinstance(value, dict):
                continue
            changed = dict(value)
            for name in column.json_keys:
                old = value.get(name)
                if isinstance(old, str) and _key_of(old) != keyring.primary:
                    new = _reseal(keyring, old, rotation)
                    if new is not None:
                        changed[name] = new
            if changed != value:
                # JSON cannot be compared in SQL on PostgreSQL: the row is taken as read
                # (jobs' arguments do not change once queued)
                result = db.session.execute(
                    sa.update(column.table)
                    .where(column.row(key))
                    .values({column.column.name: changed})
                )
                done += result.rowcount  # type: ignore[attr-defined]
        db.session.commit()  # a batch at a time
    return done


def rotate() -> Rotation:
    """Re-seal every value under the first key; audited as ``keys.rotated``."""
    keyring = crypto.keyring()
    rotation = Rotation()
    for column in sealed_columns():
        worker = _rotate_json if column.kind == "json" else _rotate_plain
        count = worker(column, keyring, rotation)
        if count:
            rotation.by_column[column.name] = count
        rotation.resealed += count
    audit(
        "keys.rotated",
        key=keyring.names[0],
        resealed=rotation.resealed,
        unreadable=rotation.unreadable,
    )
    db.session.commit()
    return rotation


def outstanding(counts: dict[str, Counter[str]] | None = None) -> Counter[str]:
    """Sealed values by key name, every key but the first."""
    keyring = crypto.keyring()
    names = dict(zip(keyring.ids, keyring.names, strict=True))
    total: Counter[str] = Counter()
    # Values sealed before keyrings are under the derived key: not outstanding while it is
    # the first.
    primary = {keyring.primary} | ({LEGACY} if keyring.names[0] == crypto.DERIVED else set())
    for counter in (counts if counts is not None else census()).values():
        for key_id, number in counter.items():
            if key_id not in primary:
                total[names.get(key_id, LEGACY if key_id == LEGACY else key_id)] += number
    return total


def warnings() -> list[str]:
    """What ``mars check`` says about the keyring."""
    keyring = crypto.keyring()
    found: list[str] = []
    if keyring.names[0] == crypto.DERIVED and current_app.config["MARS"]["ENV"] == "production":
        found.append(
            "MARS_ENCRYPTION_KEYS is not set: sealed values are encrypted under a key derived "
            "from MARS_SECRET_KEY, which then cannot change without losing them; see "
            "docs/privacy.md"
        )
    held = set(keyring.names) | ({LEGACY} if crypto.DERIVED in keyring.names else set())
    left = outstanding()
    waiting = {name: n for name, n in left.items() if name in held}
    lost = {name: n for name, n in left.items() if name not in held}
    if waiting:
        listed = ", ".join(f"{n} under {name}" for name, n in sorted(waiting.items()))
        found.append(
            f"sealed values still depend on keys other than the first ({listed}): run "
            "`mars keys rotate` before removing a key from MARS_ENCRYPTION_KEYS"
        )
    if lost:
        listed = ", ".join(f"{n} under {name}" for name, n in sorted(lost.items()))
        found.append(
            f"sealed values under keys not in MARS_ENCRYPTION_KEYS cannot be read ({listed}); "
            "put the key back or accept their loss"
        )
    return found


keys_group = AppGroup(
    "keys", help="The encryption keyring of sealed values; the keys ID tokens are signed with."
)


@keys_group.command("generate", with_appcontext=False)
def generate_command() -> None:
    """Print a new random key for MARS_ENCRYPTION_KEYS (keep it as secret as the database
    password: with a copy of the database it opens every sealed value)."""
    click.echo(crypto.generate_key())


def _print_counts() -> None:
    keyring = crypto.keyring()
    click.echo("keys (the first encrypts): " + ", ".join(keyring.names))
    left = outstanding()
    total = sum(left.values())
    click.echo(f"values under keys other than the first: {total}")
    for name, number in sorted(left.items()):
        click.echo(f"  {name}: {number}")


@keys_group.command("status")
def status_command() -> None:
    """Show the keyring (by key id, never the keys) and how many sealed values are still
    under keys other than the first."""
    _print_counts()


@keys_group.command("rotate")
def rotate_command() -> None:
    """Re-encrypt every sealed value under the first key, in batches, while MARS serves.
    It can be stopped and run again; when it reports 0 values under other keys, those keys
    can be removed from MARS_ENCRYPTION_KEYS."""
    rotation = rotate()
    for name, number in sorted(rotation.by_column.items()):
        click.echo(f"{name}: {number} re-encrypted")
    click.echo(f"re-encrypted: {rotation.resealed}")
    if rotation.unreadable:
        click.secho(
            f"{rotation.unreadable} values are under keys not in MARS_ENCRYPTION_KEYS and "
            "were left as they are",
            err=True,
            fg="yellow",
        )
    _print_counts()
