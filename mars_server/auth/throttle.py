"""Fixed-window counters in the database, shared by every worker and process.

What the ``auth`` plugin throttles counts here: failed sign-ins (per account and per
address), failed OAuth client authentications (per client and per address), and account
e-mails asked for (per recipient and per address). A key is a kind and a digest of the
value, so the table never holds an e-mail address or an IP address in the clear.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mars_server import plugin_settings
from mars_server.auth.models import Throttle
from mars_server.db import db, utcnow
from mars_server.http import MarsError
from mars_server.http.addresses import address_key  # noqa: F401  (shared with the API's limits)

if TYPE_CHECKING:
    from collections.abc import Iterable


class Throttled(MarsError):
    """429 with ``Retry-After``, and the same number as the problem's ``retry_after``."""

    status = 429

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


def mailbox_key(email: str) -> str:
    """The mailbox an e-mail address reaches, as far as MARS can tell, for per-recipient
    limits: spellings that reach one mailbox share one allowance. Unicode compatibility forms
    (fullwidth letters) and case are folded, the domain is put in its IDNA form (which drops
    soft hyphens and the like), quotes and a ``+tag`` of the local part are dropped."""
    text = unicodedata.normalize("NFKC", email).strip()
    local, _, domain = text.rpartition("@")
    local = local.strip('"').casefold().split("+", 1)[0]
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        domain = domain.casefold()
    return f"{local}@{domain}"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` counted under ``key`` in a window of ``window``."""

    key: str
    limit: int
    window: dt.timedelta

    @classmethod
    def of(cls, kind: str, value: str, limit: int, minutes: int) -> Limit:
        """The limit of ``value`` (an address, an e-mail key, a client id) as ``kind``."""
        return cls(f"{kind}:{digest(value)}", limit, dt.timedelta(minutes=minutes))


def retry_after(limits: Iterable[Limit]) -> int | None:
    """Seconds until every exhausted limit of ``limits`` is free again; ``None`` when none
    is exhausted."""
    by_key = {limit.key: limit for limit in limits}
    if not by_key:
        return None
    now = utcnow()
    rows = db.session.execute(
        sa.select(Throttle.key, Throttle.failures, Throttle.window_start).where(
            Throttle.key.in_(by_key)
        )
    )
    waits = [
        math.ceil((row.window_start + by_key[row.key].window - now).total_seconds())
        for row in rows
        if row.failures >= by_key[row.key].limit and row.window_start + by_key[row.key].window > now
    ]
    return max(waits) if waits else None


def count(limit: Limit) -> int:
    """Count one more under ``limit.key`` and return the count of the current window (a new
    window starts when the last one is over).

    One upsert statement: concurrent counts from any number of processes are all counted,
    and the caller reads the count it made. Not committed: the caller's transaction is.
    """
    now = utcnow()
    in_window = Throttle.window_start > now - limit.window
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Throttle)
        .values(key=limit.key, window_start=now, failures=1)
        .on_conflict_do_update(
            index_elements=[Throttle.key],
            set_={
                "failures": sa.case((in_window, Throttle.failures + 1), else_=1),
                "window_start": sa.case(
                    (in_window, Throttle.window_start),
                    else_=sa.literal(now, Throttle.window_start.type),
                ),
            },
        )
        .returning(Throttle.failures)
    )
    return int(db.session.execute(statement).scalar_one())


def reset(limits: Iterable[Limit]) -> None:
    """Forget what was counted under ``limits`` (a successful sign-in frees its account)."""
    db.session.execute(sa.delete(Throttle).where(Throttle.key.in_([x.key for x in limits])))


#: the settings of every window counted here: a row older than the longest counts for none.
WINDOW_SETTINGS = (
    "login_window_minutes",
    "client_auth_window_minutes",
    "account_mail_window_minutes",
)


def purge_stale() -> int:
    """Delete the counts whose window is over for every limit (the ``auth.purge_throttles``
    task, hourly); returns how many. Each request of a new address or e-mail adds a row."""
    settings = plugin_settings("auth")
    longest = max(settings[name] for name in WINDOW_SETTINGS)
    cutoff = utcnow() - dt.timedelta(minutes=longest)
    deleted = db.session.execute(sa.delete(Throttle).where(Throttle.window_start < cutoff))
    return int(deleted.rowcount)  # type: ignore[attr-defined]
