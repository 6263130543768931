"""Backups: a consistent copy of the whole database and a manifest, checked by restoring it.

An archive is a tar file holding ``manifest.json`` and the database: SQLite's own copy
(its online backup API; the tar is gzipped) or ``pg_dump``'s custom format (compressed
already). Optionally the whole archive is encrypted with age (pyrage) to recipients whose
private keys the operator keeps elsewhere: the server can write backups it cannot read.

The manifest says what the copy must hold: MARS's and each plugin's version, the migration
heads, the rows of every table, and what each plugin's :class:`~mars_server.hookspecs.BackupCheck`
recorded (the audit chain's head), all read from the very snapshot that was copied (on
PostgreSQL, ``pg_dump --snapshot`` of the transaction that counted), plus the copy's
SHA-256. :func:`verify` restores an archive into a scratch database and checks each of
those; :func:`restore` does the same into the operator's database.

Sealed values (webhook secrets, TOTP secrets...) stay sealed in the copy: restoring needs
the same ``MARS_SECRET_KEY`` to read them (docs/recovery.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.pool import NullPool

from mars_server import __version__
from mars_server.db import db, new_id, utcnow
from mars_server.events import audit
from mars_server.hookspecs import BackupCheckFailed
from mars_server.ops import migrations
from mars_server.ops.models import FAILED, SUCCEEDED, BackupRecord
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Sequence

    from sqlalchemy import Connection

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
PAYLOADS = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
AGE_HEADER = b"age-encryption.org/v1\n"
#: The names MARS gives the archives it makes; retention only ever removes these.
ARCHIVE_NAME = re.compile(r"mars-backup-(\d{8}T\d{6}Z)\.tar(?:\.gz)?(?:\.age)?")
STAMP = "%Y%m%dT%H%M%SZ"
#: The hidden folder a backup is made in, beside the archive (so that it appears by a link,
#: whole): unencrypted while it is made; a folder of a backup that was killed is removed by
#: the next scheduled one.
STAGING = ".mars-backup-"
#: How long ``pg_dump``/``pg_restore`` may take (a day: a large database, a slow disk).
TOOL_TIMEOUT = 24 * 3600


class BackupError(Exception):
    """What went wrong, in one line for the operator; nothing was written where it failed."""


@dataclass(frozen=True)
class Check:
    """One line of ``mars backup verify`` (and ``restore``)."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<10}  {self.detail}"


# --- the manifest ---------------------------------------------------------------------------


class _PayloadSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.OneOf(PAYLOADS.values()))
    size = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0))
    sha256 = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[0-9a-f]{64}$"))


class ManifestSchema(ma.Schema):
    """``manifest.json``: read back with this schema, so a damaged one is refused in words."""

    format = ma.fields.Integer(required=True, validate=ma.validate.Equal(FORMAT))
    created_at = ma.fields.AwareDateTime(required=True, default_timezone=dt.UTC)
    mars_version = ma.fields.String(required=True)
    plugins = ma.fields.Dict(ma.fields.String(), ma.fields.String(), required=True)
    dialect = ma.fields.String(required=True, validate=ma.validate.OneOf(PAYLOADS))
    heads = ma.fields.List(ma.fields.String(), required=True)
    tables = ma.fields.Dict(
        ma.fields.String(), ma.fields.Integer(validate=ma.validate.Range(min=0)), required=True
    )
    checks = ma.fields.Dict(ma.fields.String(), ma.fields.Dict(), required=True)
    payload = ma.fields.Nested(_PayloadSchema, required=True)


def _contents(connection: Connection) -> dict[str, Any]:
    """Every table's rows and the migration heads, as ``connection`` sees them."""
    names = sorted(sa.inspect(connection).get_table_names())
    tables = {
        name: int(connection.scalar(sa.select(sa.func.count()).select_from(sa.table(name))) or 0)
        for name in names
    }
    heads: list[str] = []
    if "alembic_version" in names:
        heads = sorted(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))
    return {"heads": heads, "tables": tables}


def _facts(connection: Connection) -> dict[str, Any]:
    """What the manifest says of the database ``connection`` sees: :func:`_contents` and
    what each plugin's backup check records."""
    checks = {}
    for name, check in mars_state().plugins.backup_checks().items():
        try:
            checks[name] = check.record(connection)
        except sa.exc.SQLAlchemyError as error:
            raise BackupError(
                f"the {name} plugin could not note its data: {_reason(error)}"
            ) from None
    return {**_contents(connection), "checks": checks}


def _reason(error: sa.exc.SQLAlchemyError) -> str:
    """The database's own words, without SQLAlchemy's statement and link."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the tools ----------------------------------------------------------------------------------


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for ``pg_dump``/``pg_restore``, and their environment: the
    password goes in ``PGPASSWORD``, never on a command line others can read."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed: install PostgreSQL's client programs "
            "(Debian: postgresql-client), the server's major version or newer"
        )
    return found


def _run(command: list[str], env: dict[str, str]) -> None:
    program = command[0]
    try:
        done = subprocess.run(  # noqa: S603 (a fixed program; arguments are ours)
            [_program(program), *command[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{program} did not finish within {TOOL_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{program} failed: {lines[-1] if lines else done.returncode}")


# --- making a backup ------------------------------------------------------------------------


def _sqlite_file(url: sa.URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError("only a SQLite database in a file can be backed up")
    return Path(url.database)


def _copy_sqlite(url: sa.URL, payload: Path) -> dict[str, Any]:
    """SQLite's online backup API into ``payload``; the facts are read from the copy, which
    is the snapshot by construction."""
    source_path = _sqlite_file(url)
    if not source_path.is_file():
        raise BackupError(f"{source_path} does not exist")
    source = sqlite3.connect(f"file:{quote(str(source_path))}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(payload)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as error:
        raise BackupError(f"SQLite could not copy {source_path}: {error}") from None
    finally:
        target.close()
        source.close()
    engine = sa.create_engine(f"sqlite:///{payload}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return _facts(connection)
    finally:
        engine.dispose()


def _dump_postgres(engine: sa.Engine, payload: Path) -> dict[str, Any]:
    """``pg_dump`` of the snapshot exported by the transaction that reads the facts: the
    counts and the chain's head are those of the dump, however busy MARS is."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            # the transaction waits, idle, while pg_dump reads its snapshot
            connection.execute(sa.text("SET LOCAL statement_timeout = 0"))
            connection.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            snapshot = connection.scalar(sa.text("SELECT pg_export_snapshot()"))
            facts = _facts(connection)
            conninfo, env = _libpq(engine.url)
            _run(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--no-password",
                    f"--file={payload}",
                    f"--dbname={conninfo}",
                ],
                env,
            )
    return facts


def _plugin_versions() -> dict[str, str]:
    return {plugin.info.name: plugin.info.version for plugin in mars_state().plugins.loaded}


def default_name(dialect: str, *, encrypted: bool, when: dt.datetime | None = None) -> str:
    stamp = (when or utcnow()).strftime(STAMP)
    gzipped = ".gz" if dialect == "sqlite" else ""
    return f"mars-backup-{stamp}.tar{gzipped}{'.age' if encrypted else ''}"


def _recipients(values: Sequence[str]) -> list[Any]:
    from pyrage import RecipientError, x25519

    try:
        return [x25519.Recipient.from_str(value.strip()) for value in values]
    except RecipientError:
        raise BackupError("a recipient is not an age public key (age1...)") from None


def create(out: Path, recipients: Sequence[str] = ()) -> dict[str, Any]:
    """Back the database up into ``out`` (which must not exist), encrypted to ``recipients``
    if any; return the manifest. The file appears whole or not at all, readable only by
    its owner."""
    engine = db.engine
    dialect = engine.dialect.name
    if dialect not in PAYLOADS:
        raise BackupError(f"MARS cannot back up a {dialect} database")
    keys = _recipients(recipients)
    out = out.absolute()
    if out.exists():
        raise BackupError(f"{out} exists already: give another name")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a folder")
    with tempfile.TemporaryDirectory(prefix=STAGING, dir=out.parent) as work:
        payload = Path(work, PAYLOADS[dialect])
        if dialect == "sqlite":
            facts = _copy_sqlite(engine.url, payload)
        else:
            facts = _dump_postgres(engine, payload)
        manifest = {
            "format": FORMAT,
            "created_at": utcnow().isoformat(),
            "mars_version": __version__,
            "plugins": _plugin_versions(),
            "dialect": dialect,
            **facts,
            "payload": {
                "name": payload.name,
                "size": payload.stat().st_size,
                "sha256": _sha256(payload),
            },
        }
        archive = Path(work, "archive")
        with tarfile.open(archive, "w:gz" if dialect == "sqlite" else "w") as tar:
            document = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(document), 0o600, int(utcnow().timestamp())
            tar.addfile(info, io.BytesIO(document))
            tar.add(payload, arcname=payload.name)
        payload.unlink()  # the archive holds it: the disk needs room for two copies, not three
        if keys:
            import pyrage

            sealed = Path(work, "archive.age")
            with archive.open("rb") as reader, sealed.open("wb") as writer:
                pyrage.encrypt_io(reader, writer, keys)
            archive = sealed
        archive.chmod(0o600)
        with archive.open("rb") as written:
            os.fsync(written.fileno())  # whole on disk before it has its name
        try:
            os.link(archive, out)  # never over a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{out} exists already: give another name") from None
    return manifest


# --- reading one back -------------------------------------------------------------------------


def _identities(files: Sequence[Path]) -> list[Any]:
    from pyrage import IdentityError, x25519

    found = []
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise BackupError(f"cannot read the key {file}: {error}") from None
        for line in lines:
            if line.startswith("AGE-SECRET-KEY-"):
                try:
                    found.append(x25519.Identity.from_str(line.strip()))
                except IdentityError:
                    raise BackupError(f"{file} holds a damaged age key") from None
    if not found:
        raise BackupError("no age key (AGE-SECRET-KEY-...) in the identity file(s)")
    return found


def _open(path: Path, identities: Sequence[Path], work: Path) -> tuple[dict[str, Any], Path]:
    """The manifest and the database copy of the archive at ``path``, in ``work``. Raise
    :class:`BackupError` when it cannot be read; the copy's checksum is not checked here."""
    try:
        with path.open("rb") as file:
            encrypted = file.read(len(AGE_HEADER)) == AGE_HEADER
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    if encrypted:
        if not identities:
            raise BackupError("the archive is encrypted: give the key with --identity FILE")
        import pyrage

        keys = _identities(identities)
        plain = work / "archive"
        try:
            with path.open("rb") as reader, plain.open("wb") as writer:
                pyrage.decrypt_io(reader, writer, keys)
        except pyrage.DecryptError as error:
            raise BackupError(f"cannot decrypt the archive: {error}") from None
        path = plain
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {member.name: member for member in tar.getmembers()}
            if MANIFEST not in members:
                raise BackupError("not a MARS backup: it holds no manifest.json")
            manifest_file = tar.extractfile(members[MANIFEST])
            if manifest_file is None:
                raise BackupError("not a MARS backup: its manifest.json is not a file")
            try:
                manifest = ManifestSchema().load(json.load(manifest_file))
            except (ValueError, ma.ValidationError) as error:
                raise BackupError(f"the manifest is damaged: {_first(error)}") from None
            name = manifest["payload"]["name"]
            member = members.get(name)
            source = tar.extractfile(member) if member is not None else None
            if source is None:
                raise BackupError(f"the archive lacks the database copy {name}")
            if member is not None and member.size != manifest["payload"]["size"]:
                raise BackupError(
                    f"the archive's {name} is {member.size} bytes, the manifest says "
                    f"{manifest['payload']['size']}: the archive was damaged"
                )
            payload = work / name  # a name of PAYLOADS, never the archive's own path
            with payload.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise BackupError(f"the archive is damaged or cut short: {error}") from None
    return manifest, payload


def _first(error: Exception) -> str:
    if isinstance(error, ma.ValidationError) and isinstance(error.messages, dict):
        field, messages = next(iter(error.messages.items()))
        return f"{field}: {messages}"
    return str(error)


def _checksum(manifest: dict[str, Any], payload: Path) -> Check:
    expected = manifest["payload"]
    size = payload.stat().st_size
    if size != expected["size"] or _sha256(payload) != expected["sha256"]:
        return Check(
            "checksum",
            False,
            f"{payload.name} does not match the manifest's SHA-256 ({size} bytes, "
            f"{expected['size']} recorded): the archive was damaged",
        )
    return Check("checksum", True, f"{payload.name}: {_size(size)}, SHA-256 as recorded")


def _size(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # pragma: no cover


def _restore_payload(payload: Path, dialect: str, url: sa.URL, *, replace: bool = False) -> None:
    if dialect == "sqlite":
        target = _sqlite_file(url)
        if target == payload:  # verify's scratch database is the copy itself
            return
        staged = target.with_name(target.name + ".restoring")
        try:
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out, payload.open("rb") as copy:
                shutil.copyfileobj(copy, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            for suffix in ("-wal", "-shm", "-journal"):  # an old database's, not the copy's
                target.with_name(target.name + suffix).unlink(missing_ok=True)
            os.replace(staged, target)
        except OSError as error:
            staged.unlink(missing_ok=True)
            raise BackupError(f"cannot write {target}: {error.strerror}") from None
        return
    _restore_postgres(payload, url, replace=replace)


#: What ``restore --force`` runs first, in the restore's own transaction.
_REPLACE_SQL = "DROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n"


def _restore_postgres(payload: Path, url: sa.URL, *, replace: bool) -> None:
    """``pg_restore``'s SQL through ``psql --single-transaction``: with ``replace``, the
    emptying of the target and the restore commit together, or nothing changes."""
    pg_restore, psql = _program("pg_restore"), _program("psql")
    conninfo, env = _libpq(url)
    with tempfile.TemporaryDirectory(prefix="mars-restore-sql-") as folder:
        first = Path(folder, "first.sql")
        first.write_text(_REPLACE_SQL if replace else "")
        restore = subprocess.Popen(  # noqa: S603 (fixed programs; arguments are ours)
            [pg_restore, "--no-owner", "--no-privileges", "--file=-", str(payload)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        loaded = subprocess.run(  # noqa: S603
            [
                psql, "--no-psqlrc", "--quiet", "--no-password", "--single-transaction",
                "--set=ON_ERROR_STOP=1", f"--file={first}", "--file=-", f"--dbname={conninfo}",
            ],
            env=env,
            stdin=restore.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )  # fmt: skip
        if restore.stdout is not None:
            restore.stdout.close()
        unpacked = restore.wait(TOOL_TIMEOUT)
        problems = restore.stderr.read().decode(errors="replace") if restore.stderr else ""
        if restore.stderr is not None:
            restore.stderr.close()
    # psql first: when it stops on an error, pg_restore, still writing to it, dies of
    # SIGPIPE, and psql's error is the one that tells what happened.
    if loaded.returncode != 0:
        lines = [line for line in loaded.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else loaded.returncode
        raise BackupError(f"the restore was rolled back, nothing changed: {reason}")
    if unpacked != 0:
        lines = [line for line in problems.splitlines() if line.strip()]
        raise BackupError(f"pg_restore failed: {lines[-1] if lines else unpacked}")


def _checks_after_restore(manifest: dict[str, Any], url: sa.URL) -> Iterator[Check]:
    """Compare a restored database with its manifest: heads, rows, each plugin's check."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            try:
                found = _contents(connection)
            except sa.exc.SQLAlchemyError as error:
                yield Check(
                    "rows", False, f"the restored database cannot be read: {_reason(error)}"
                )
                return
            yield _heads_check(manifest["heads"], found["heads"])
            yield _rows_check(manifest["tables"], found["tables"])
            checks = mars_state().plugins.backup_checks()
            for name, facts in sorted(manifest["checks"].items()):
                check = checks.get(name)
                if check is None:
                    yield Check(name, True, f"not checked: the {name} plugin is not installed")
                    continue
                try:
                    yield Check(name, True, check.verify(connection, facts))
                except BackupCheckFailed as failure:
                    yield Check(name, False, str(failure))
    finally:
        engine.dispose()


def _heads_check(recorded: list[str], found: list[str]) -> Check:
    if sorted(recorded) != sorted(found):
        return Check("migrations", False, f"heads {found} restored, {recorded} recorded")
    mine = migrations.script_heads()
    if set(found) == mine:
        note = "this MARS's heads"
    elif all(migrations.revision_branch(head) is not None for head in found):
        note = "older than this MARS's: run `mars db upgrade` after restoring"
    else:
        note = "some unknown to this MARS: install the version that made the backup"
    return Check("migrations", True, f"{len(found)} branch head(s) as recorded ({note})")


def _rows_check(recorded: dict[str, int], found: dict[str, int]) -> Check:
    wrong = [
        f"{name}: {found.get(name, 'no table')} restored, {recorded.get(name, 'no table')} recorded"
        for name in sorted(set(recorded) | set(found))
        if recorded.get(name) != found.get(name)
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return Check("rows", False, "; ".join(wrong[:3]) + more)
    total = sum(found.values())
    return Check("rows", True, f"{len(found)} tables, {total} rows, as recorded")


@contextmanager
def _scratch_database(dialect: str, work: Path, server: sa.URL | None) -> Iterator[sa.URL]:
    """A database to restore into and drop afterwards: a file in ``work`` for SQLite; for
    PostgreSQL, a new database on ``server`` (the configured one's, by default)."""
    if dialect == "sqlite":  # the copy taken out of the archive is a database already
        yield sa.make_url(f"sqlite:///{work / PAYLOADS['sqlite']}")
        return
    if server is None or server.get_backend_name() != "postgresql":
        raise BackupError(
            "a PostgreSQL backup is checked in a scratch database on a PostgreSQL server: "
            "give one with --scratch postgresql://..."
        )
    name = f"mars_verify_{secrets.token_hex(6)}"
    admin = sa.create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as error:
        admin.dispose()
        raise BackupError(f"cannot create a scratch database: {_reason(error)}") from None
    try:
        yield server.set(database=name)
    finally:
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except sa.exc.SQLAlchemyError as error:
            log.warning("the scratch database %s is left: drop it (%s)", name, _reason(error))
        admin.dispose()


def verify(
    path: Path, identities: Sequence[Path] = (), scratch: sa.URL | None = None
) -> Iterator[Check]:
    """Check the archive at ``path`` by restoring it into a scratch database: one
    :class:`Check` per line, as each is done; stops after one that leaves nothing to check."""
    with tempfile.TemporaryDirectory(prefix="mars-verify-") as folder:
        work = Path(folder)
        opened = yield from _read(path, identities, work)
        if opened is None:
            return
        manifest, payload = opened
        dialect = manifest["dialect"]
        try:
            with _scratch_database(dialect, work, scratch or db.engine.url) as url:
                try:
                    _restore_payload(payload, dialect, url)
                except BackupError as error:
                    yield Check("restore", False, str(error))
                    return
                where = "a temporary file" if dialect == "sqlite" else f"database {url.database}"
                yield Check("restore", True, f"restored into a scratch database ({where})")
                yield from _checks_after_restore(manifest, url)
        except BackupError as error:
            yield Check("restore", False, str(error))


def _read(
    path: Path, identities: Sequence[Path], work: Path
) -> Generator[Check, None, tuple[dict[str, Any], Path] | None]:
    """The ``archive`` and ``checksum`` lines; the manifest and the copy when both are ok."""
    try:
        manifest, payload = _open(path, identities, work)
    except BackupError as error:
        yield Check("archive", False, str(error))
        return None
    yield Check("archive", True, _describe(manifest))
    checksum = _checksum(manifest, payload)
    yield checksum
    return (manifest, payload) if checksum.ok else None


def _describe(manifest: dict[str, Any]) -> str:
    made = manifest["created_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"format {manifest['format']}, made {made} by MARS {manifest['mars_version']} "
        f"({manifest['dialect']}, {len(manifest['plugins'])} plugins)"
    )


def _table_names(url: sa.URL) -> list[str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return sa.inspect(connection).get_table_names()
    except sa.exc.SQLAlchemyError as error:
        raise BackupError(f"cannot reach the target database: {_reason(error)}") from None
    finally:
        engine.dispose()


def empty_postgres(url: sa.URL) -> None:
    """Remove everything from a PostgreSQL database: its ``public`` schema, made again."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def restore(
    path: Path, into: sa.URL, identities: Sequence[Path] = (), *, force: bool = False
) -> Iterator[Check]:
    """Restore the archive at ``path`` into the database at ``into``, which must be empty
    unless ``force`` (then it is emptied first), and check it as :func:`verify` does."""
    with tempfile.TemporaryDirectory(prefix="mars-restore-") as folder:
        opened = yield from _read(path, identities, Path(folder))
        if opened is None:
            return
        manifest, payload = opened
        dialect = manifest["dialect"]
        if into.get_backend_name() != dialect:
            yield Check(
                "restore",
                False,
                f"a {KINDS[dialect]} backup restores into a {KINDS[dialect]} database only",
            )
            return
        try:
            if dialect == "sqlite":
                _sqlite_file(into)
            present = _table_names(into)
            if present and not force:
                yield Check(
                    "restore",
                    False,
                    f"the target holds {len(present)} table(s) already: restore into an empty "
                    "database, or give --force to replace everything in it",
                )
                return
            # a SQLite file is replaced whole; PostgreSQL's schema in the same transaction
            _restore_payload(payload, dialect, into, replace=bool(present))
        except BackupError as error:
            yield Check("restore", False, str(error))
            return
        yield Check("restore", True, f"restored into {into.render_as_string(hide_password=True)}")
        yield from _checks_after_restore(manifest, into)


# --- scheduled backups and retention ----------------------------------------------------------


def _dated(folder: Path) -> list[tuple[dt.datetime, Path]]:
    """MARS's archives in ``folder``, newest first."""
    dated = []
    for path in folder.iterdir():
        matched = ARCHIVE_NAME.fullmatch(path.name)
        if matched and path.is_file():
            try:
                when = dt.datetime.strptime(matched.group(1), STAMP).replace(tzinfo=dt.UTC)
            except ValueError:  # a name like ours, with no real time in it: not ours
                continue
            dated.append((when, path))
    return sorted(dated, reverse=True)


def latest(folder: Path) -> Path | None:
    """The newest archive MARS wrote in ``folder``."""
    dated = _dated(folder) if folder.is_dir() else []
    return dated[0][1] if dated else None


def prune(folder: Path, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Remove MARS's archives in ``folder`` but the newest of each of the last
    ``keep_daily`` days and ``keep_weekly`` ISO weeks that have one; return those removed."""
    dated = _dated(folder)
    kept: set[Path] = set()
    days: set[dt.date] = set()
    weeks: set[tuple[int, int]] = set()
    for when, path in dated:
        day, week = when.date(), when.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.add(day)
            kept.add(path)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            kept.add(path)
    removed = []
    for _, path in dated:
        if path in kept:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot remove the old backup %s: %s", path, error.strerror)
            continue
        removed.append(path)
    return removed


def remove_stale_staging(folder: Path, older_than: dt.timedelta) -> None:
    """Remove the staging folders of backups that were killed while they were made."""
    limit = utcnow().timestamp() - older_than.total_seconds()
    for path in folder.glob(STAGING + "*"):
        if path.is_dir() and path.stat().st_mtime < limit:
            shutil.rmtree(path, ignore_errors=True)


def last_success() -> BackupRecord | None:
    return db.session.scalars(
        sa.select(BackupRecord)
        .where(BackupRecord.status == SUCCEEDED)
        .order_by(BackupRecord.finished_at.desc())
        .limit(1)
    ).first()


def take(out: Path, recipients: Sequence[str] = (), *, make_folder: bool = False) -> BackupRecord:
    """:func:`create`, recorded (for the metrics and ``mars backup list``) and audited in
    the caller's transaction, whether it succeeded or not."""
    record = BackupRecord(id=new_id("bak"), started_at=utcnow(), file=out.name)
    try:
        if make_folder:
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create(out, recipients)
    except (BackupError, OSError) as error:
        record.status, record.error = FAILED, str(error)[:1000]
    except Exception as error:  # recorded and shown in the metrics, whatever it was
        log.exception("backup failed")
        reason = _reason(error) if isinstance(error, sa.exc.SQLAlchemyError) else str(error)
        record.status, record.error = FAILED, f"{type(error).__name__}: {reason}"[:1000]
    else:
        record.status, record.size = SUCCEEDED, out.stat().st_size
    record.finished_at = utcnow()
    db.session.add(record)
    audit(
        "backup.created" if record.status == SUCCEEDED else "backup.failed",
        target=record.id,
        file=record.file,
        size=record.size,
        error=record.error,
    )
    return record


def scheduled() -> None:
    """The ``ops.backup`` task (hourly): a backup into ``MARS_BACKUP_DIR`` when the last good
    one is ``MARS_BACKUP_EVERY_HOURS`` old, then the retention. A failure is recorded (and
    shown in the metrics) and tried again at the next hour."""
    config = current_app.config["MARS"]
    if not config["BACKUP_DIR"]:
        return
    every = dt.timedelta(hours=config["BACKUP_EVERY_HOURS"])
    newest = last_success()
    # a few minutes' slack: a backup taken at 02:00:07 is due again at the run of 02:00:03
    if newest is not None and utcnow() - newest.finished_at < every - dt.timedelta(minutes=10):
        return
    folder = Path(config["BACKUP_DIR"])
    recipients = config["BACKUP_RECIPIENTS"]
    if folder.is_dir():
        remove_stale_staging(folder, older_than=dt.timedelta(seconds=TOOL_TIMEOUT))
    out = folder / default_name(db.engine.dialect.name, encrypted=bool(recipients))
    record = take(out, recipients, make_folder=True)
    if record.status != SUCCEEDED:
        log.error("backup failed: %s", record.error)
        return
    removed = prune(folder, config["BACKUP_KEEP_DAILY"], config["BACKUP_KEEP_WEEKLY"])
    log.info("backup %s written (%d bytes); %d old one(s) removed", out, record.size, len(removed))
