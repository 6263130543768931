"""``mars audit verify``, ``mars audit seal`` and ``mars audit tail``."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup

from mars_server.audit import chain, services
from mars_server.audit.schemas import AuditRecordSchema
from mars_server.db import db, utcnow

if TYPE_CHECKING:
    from mars_server.audit.models import AuditRecord

audit_group = AppGroup("audit", help="Verify, seal and follow the audit log.")

#: Unsealed rows older than this mean no worker is sealing: `verify` says so.
STALE_UNSEALED = dt.timedelta(minutes=5)
#: How far back `tail --follow` looks again for entries whose transaction committed late.
FOLLOW_LOOKBACK = dt.timedelta(seconds=60)


def _anchor(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[int, str]:
    anchors: dict[int, str] = {}
    for value in values:
        seq, _, digest = value.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter(f"{value!r}: give SEQ:HASH, as `verify` prints the head")
        anchors[int(seq)] = digest.lower()
    return anchors


@audit_group.command("verify")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    callback=_anchor,
    metavar="SEQ:HASH",
    help="A head recorded earlier that must still be in the chain (repeatable).",
)
def verify_command(anchors: dict[int, str]) -> None:
    """Recompute the hash chain; exit 1 at the first row that breaks it."""
    verdict = chain.verify(anchors)
    waiting = f"{verdict.unsealed} row(s) await sealing"
    if not verdict.ok:
        click.echo(f"audit log BROKEN: {verdict.problem}", err=True)
        click.echo(f"the {verdict.sealed} row(s) before it are intact; {waiting}", err=True)
        raise SystemExit(1)
    click.echo(f"audit log intact: {verdict.sealed} sealed row(s); {waiting}")
    click.echo(f"head: {verdict.head_seq}:{verdict.head_hash}")
    if verdict.erased:
        unchecked = (
            f", {verdict.erased_unchecked} of them chained before digests (checked against "
            "their erasure's fingerprint)"
            if verdict.erased_unchecked
            else ""
        )
        click.echo(
            f"{verdict.erased} row(s) with personal fields erased, each covered by a recorded "
            f"erasure{unchecked}"
        )
    for seq in verdict.anchors_checked:
        click.echo(f"anchor {seq}: found")
    oldest = chain.oldest_unsealed()
    if oldest is not None and utcnow() - oldest > STALE_UNSEALED:
        click.echo(
            f"warning: an entry has waited since {oldest:%Y-%m-%d %H:%M:%S} UTC; "
            "is a worker running (`mars worker`)?",
            err=True,
        )


@audit_group.command("seal")
def seal_command() -> None:
    """Seal every committed entry into the chain now (workers do it every few seconds)."""
    total = 0
    while True:
        sealed = chain.seal(chain.BATCH, wait=True)
        db.session.commit()
        total += sealed
        if sealed < chain.BATCH:
            break
    seq, digest = chain.head()
    click.echo(f"{total} row(s) sealed; head: {seq}:{digest}")


def _line(record: AuditRecord) -> str:
    details = json.dumps(record.details, sort_keys=True, separators=(",", ":"))
    return "  ".join(
        [
            f"{record.occurred_at:%Y-%m-%d %H:%M:%S}",
            f"#{record.seq}" if record.seq is not None else "#-",
            record.actor_id or "-",
            record.action,
            record.target or "-",
            record.address or "-",
            f"req={record.request_id or '-'}",
            details,
        ]
    )


def _show(records: list[AuditRecord], as_json: bool) -> None:
    schema = AuditRecordSchema()
    for record in records:
        click.echo(json.dumps(schema.dump(record)) if as_json else _line(record))


def _follow(
    printed: list[AuditRecord], filters: dict[str, Any], as_json: bool, interval: float
) -> None:
    """Print entries as they commit. A transaction can commit after later ones did, so each
    poll looks back a minute and prints what it has not printed yet."""
    floor = printed[-1].occurred_at if printed else utcnow()
    seen = {r.id: r.occurred_at for r in printed}
    while True:
        time.sleep(interval)
        db.session.rollback()  # a new snapshot, and no identity map growing forever
        db.session.expunge_all()
        since = max(floor, utcnow() - FOLLOW_LOOKBACK)
        fresh = [r for r in services.recent(since, filters) if r.id not in seen]
        _show(fresh, as_json)
        seen.update((r.id, r.occurred_at) for r in fresh)
        seen = {key: when for key, when in seen.items() if when >= since}


@audit_group.command("tail")
@click.option(
    "-n", "--lines", "count", type=click.IntRange(0, 10_000), default=20, show_default=True
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries until stopped.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--actor", help="Only this actor's entries.")
@click.option("--target", help="Only entries about this id.")
@click.option("--action", help="Only this action (`project.*`: every `project.` action).")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True)
def tail_command(
    count: int,
    follow: bool,
    as_json: bool,
    actor: str | None,
    target: str | None,
    action: str | None,
    interval: float,
) -> None:
    """Print the newest entries, oldest of them first; with --follow, then new ones."""
    filters = {"actor": actor, "target": target, "action": action}
    printed = services.newest(count, filters) if count else []
    _show(printed, as_json)
    if follow:
        try:
            _follow(printed, filters, as_json, interval)
        except KeyboardInterrupt:
            return
