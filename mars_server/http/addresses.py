"""Client addresses as limits count them (the API's rate limits, the sign-in throttles)."""

from __future__ import annotations

import ipaddress


def address_key(address: str | None) -> str:
    """What a per-address limit counts: the IPv4 address, or the /64 network of an IPv6 one
    (one host commonly holds a whole /64, and could try from each of its addresses); requests
    whose address is unknown (a unix socket) share one key rather than escape the limit.

    ``address`` is ``request.remote_addr``: after ``MARS_PROXY_FIX_HOPS`` trusted proxies,
    never a header the client could set.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
