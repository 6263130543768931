"""``mars ratelimit show KEY`` and ``mars ratelimit reset KEY``: operators and the API's limits.

KEY names a caller as the limits count it (docs/http.md): ``user:<user id>``,
``client:<client id>`` or ``address:<ip>`` (an IPv6 address stands for its /64).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

from mars_server.db import db
from mars_server.events import audit
from mars_server.http.addresses import address_key
from mars_server.http.ratelimit import limiter_of

if TYPE_CHECKING:
    from mars_server.http.ratelimit import RateLimiter

ratelimit = AppGroup("ratelimit", help="Show or reset a caller's API rate limits.")

_KEY_HELP = "user:<id>, client:<client id> or address:<ip>"


def caller_key(key: str) -> str:
    """``key`` as the limiter counts it; a ``click.BadParameter`` when it names no caller."""
    kind, _, value = key.partition(":")
    value = value.strip()
    if kind in ("user", "client") and value:
        return f"{kind}:{value}"
    if kind == "address" and value:
        try:
            return "address:" + address_key(str(ipaddress.ip_address(value)))
        except ValueError:
            pass
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            network = None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 64:
            return f"address:{network}"
    raise click.BadParameter(f"{key!r} is not {_KEY_HELP}", param_hint="KEY")


def _limiter() -> RateLimiter:
    limiter = limiter_of(current_app)
    if limiter is None:
        raise click.ClickException("rate limits are off (MARS_RATELIMIT_ENABLED is false)")
    if not current_app.config["MARS"]["REDIS_URL"]:
        click.echo(
            "note: without MARS_REDIS_URL each MARS process counts in its own memory, "
            "which this command cannot see or reset",
            err=True,
        )
    return limiter


@ratelimit.command("show")
@click.argument("key")
def show(key: str) -> None:
    """Show KEY's quota, what is left of it and when it resets, in each policy."""
    caller = caller_key(key)
    limiter = _limiter()
    try:
        usage = limiter.usage(caller)
    except limiter.counters.errors as exc:
        raise click.ClickException(f"the rate-limit storage does not answer: {exc}") from None
    click.echo(caller)
    rows = [("POLICY", "LIMIT", "USED", "REMAINING", "RESET")]
    rows += [
        (
            u.policy.name,
            f"{u.policy.quota}/{u.policy.window}s",
            str(u.used),  # above the limit: the requests refused
            str(u.remaining),
            f"{u.reset}s" if u.used else "-",
        )
        for u in usage
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@ratelimit.command("reset")
@click.argument("key")
def reset(key: str) -> None:
    """Give KEY its whole quota back in every policy (audited)."""
    caller = caller_key(key)
    limiter = _limiter()
    try:
        limiter.reset(caller)
    except limiter.counters.errors as exc:
        raise click.ClickException(f"the rate-limit storage does not answer: {exc}") from None
    audit(
        "ratelimit.reset",
        target=caller,
        policies=[policy.name for policy in limiter.policies(caller)],
    )
    db.session.commit()
    click.echo(f"rate limits of {caller} reset")
