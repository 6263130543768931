"""``mars backup create|verify|restore|keygen|list`` (docs/recovery.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from mars_server.db import db
from mars_server.ops import backup

if TYPE_CHECKING:
    from collections.abc import Iterable

backup_group = AppGroup("backup", help="Back the database up, check a backup, restore one.")

_IDENTITY = click.option(
    "--identity",
    "identities",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The age key file (from `mars backup keygen`) of an encrypted backup (repeatable).",
)


def _report(checks: Iterable[backup.Check]) -> None:
    """Print one line per check; exit 1 when one failed."""
    failed = False
    for check in checks:
        click.echo(check.line())
        failed = failed or not check.ok
    if failed:
        raise SystemExit(1)


@backup_group.command("create")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive to write (it must not exist). Default: a dated name in "
    "MARS_BACKUP_DIR, or in this folder.",
)
@click.option(
    "--encrypt/--no-encrypt",
    default=None,
    help="Encrypt to the --recipient keys, or to MARS_BACKUP_RECIPIENTS (the default when "
    "that is set).",
)
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    metavar="AGE1...",
    help="An age public key to encrypt to (repeatable); implies --encrypt.",
)
def create_command(out: Path | None, encrypt: bool | None, recipients: tuple[str, ...]) -> None:
    """Back the whole database up while MARS serves: a consistent snapshot, its manifest
    and checksum in one archive."""
    configured = current_app.config["MARS"]["BACKUP_RECIPIENTS"]
    keys = list(recipients) or (configured if encrypt is not False else [])
    if encrypt and not keys:
        raise click.UsageError("--encrypt needs --recipient or MARS_BACKUP_RECIPIENTS")
    if encrypt is False:
        keys = []
    if out is None:
        folder = Path(current_app.config["MARS"]["BACKUP_DIR"] or ".")
        out = folder / backup.default_name(db.engine.dialect.name, encrypted=bool(keys))
    record = backup.take(out, keys)
    db.session.commit()
    if record.error:
        raise click.ClickException(f"no backup: {record.error}")
    click.echo(f"backup written: {out} ({record.size} bytes{', encrypted' if keys else ''})")
    click.echo(f"check it with: mars backup verify {out}")


@backup_group.command("verify")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--latest", is_flag=True, help="Check the newest backup in MARS_BACKUP_DIR (the drill)."
)
@_IDENTITY
@click.option(
    "--scratch",
    metavar="URL",
    help="The PostgreSQL server to restore a PostgreSQL backup into, in a database created "
    "and dropped for the check. Default: the configured database's server.",
)
def verify_command(
    archive: Path | None, latest: bool, identities: tuple[Path, ...], scratch: str | None
) -> None:
    """Restore ARCHIVE (or, with --latest, the newest scheduled backup) into a scratch
    database and check it against its manifest: the checksum, the migration heads, every
    table's rows and each plugin's own check (the audit chain). One line per check; exit
    status 1 if one failed."""
    if (archive is None) == (not latest):
        raise click.UsageError("give ARCHIVE or --latest")
    if archive is None:
        folder = current_app.config["MARS"]["BACKUP_DIR"]
        if not folder:
            raise click.UsageError("--latest looks in MARS_BACKUP_DIR, which is not set")
        archive = backup.latest(Path(folder))
        if archive is None:
            raise click.ClickException(f"no backup in {folder}")
        click.echo(f"checking {archive}")
    _report(backup.verify(archive, identities, _url(scratch) if scratch else None))


@backup_group.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--into",
    "into",
    metavar="URL",
    help="Another database to restore into. Default: the one MARS is configured with "
    "(MARS_DATABASE_URL or MARS_DATABASE_URL_FILE), which keeps its password off the "
    "command line.",
)
@click.option("--force", is_flag=True, help="Replace whatever the target database holds.")
@_IDENTITY
def restore_command(
    archive: Path, into: str | None, force: bool, identities: tuple[Path, ...]
) -> None:
    """Restore ARCHIVE into the configured database (or --into URL), which must be empty
    unless --force, then check it as `verify` does. Stop MARS first; afterwards run
    `mars check`, then start it."""
    target = _url(into) if into else db.engine.url
    db.engine.dispose()  # this command's own connections leave the target alone
    _report(backup.restore(archive, target, identities, force=force))
    click.echo("restored: run `mars check`, then start MARS")


@backup_group.command("keygen")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (it must not exist). Keep it off the server.",
)
def keygen_command(out: Path) -> None:
    """Make an age key pair for encrypted backups: the private key into --out (readable by
    you only), the public key printed, for MARS_BACKUP_RECIPIENTS."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} exists already") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(f"# MARS backup key; public key: {recipient}\n{identity}\n")
    click.echo(recipient)


@backup_group.command("list")
@click.option("-n", "--lines", "count", type=click.IntRange(1, 1000), default=20, show_default=True)
def list_command(count: int) -> None:
    """The latest backups MARS made, good or failed, newest first."""
    from mars_server.ops.models import BackupRecord

    records = db.session.scalars(
        sa.select(BackupRecord).order_by(BackupRecord.finished_at.desc()).limit(count)
    )
    for record in records:
        outcome = f"{record.size} bytes" if record.error is None else f"FAILED: {record.error}"
        click.echo(
            f"{record.finished_at:%Y-%m-%d %H:%M:%S}  {record.status:<9}  {record.file}  {outcome}"
        )


def _url(value: str) -> sa.URL:
    from mars_server.config import normalise_database_url

    try:
        return sa.make_url(normalise_database_url(value))
    except sa.exc.ArgumentError:  # the value is not repeated: it may hold a password
        raise click.BadParameter("not a database URL (postgresql://... or sqlite:///...)") from None
