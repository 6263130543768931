"""Which addresses webhooks may reach: the server-side request forgery (SSRF) guard.

A webhook URL is chosen by a user, and MARS sends requests to it from inside its own network.
Unless ``MARS_WEBHOOKS_ALLOW_PRIVATE`` is set, nothing but globally routable unicast
addresses is allowed: not loopback, private, link-local (the cloud metadata service at
169.254.169.254), shared (100.64.0.0/10), multicast, reserved or unspecified ones, nor those
written as IPv4-mapped, NAT64 or 6to4 IPv6 addresses.

:func:`refusal` is the authority: the transport calls it on every address a host name
resolves to, at connect time, and connects to that very address (DNS cannot change its
answer in between). :func:`url_problem` only refuses what is visibly wrong in a URL early,
when an endpoint is created or changed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SHARED = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SCHEMES = ("http", "https")
SETTING = "MARS_WEBHOOKS_ALLOW_PRIVATE"


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached, or ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:  # the IPv6 form stands for this IPv4 address
            return refusal(embedded)
        if address.sixtofour is not None:
            reason = refusal(address.sixtofour)
            if reason:
                return reason
    kind = None
    if address.is_unspecified:
        kind = "an unspecified"
    elif address.is_loopback:
        kind = "a loopback"
    elif address.is_link_local:
        kind = "a link-local"
    elif address.is_multicast:
        kind = "a multicast"
    elif isinstance(address, ipaddress.IPv4Address) and address in SHARED:
        kind = "a shared (carrier-grade NAT)"
    elif address.is_private:
        kind = "a private"
    elif address.is_reserved or not address.is_global:
        kind = "a reserved"
    if kind is None:
        return None
    return f"{address} is {kind} address"


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any form a resolver accepts, else ``None``.

    Besides the usual notations, C resolvers read ``2130706433``, ``0x7f000001``, ``127.1``
    and ``0177.0.0.1`` as 127.0.0.1: those are addresses too.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host):
        return None  # inet_aton would also accept "1 whatever": only numbers count here
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """What is wrong with ``url`` as a webhook URL, in one sentence, or ``None``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme.lower() not in SCHEMES:
        return "Use an http:// or https:// URL."
    host = parts.hostname
    if not host:
        return "The URL needs a host name."
    if port == 0:
        return "Port 0 cannot be reached."
    if parts.username is not None or parts.password is not None:
        return (
            "Remove the user name and password from the URL: deliveries are signed, "
            "verify the signature instead."
        )
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        return "The URL must not contain spaces or control characters."
    if allow_private:
        return None
    if host == "localhost" or host.endswith((".localhost", ".localhost.")):
        return f"{host} is a loopback address; webhooks may not reach this network."
    address = parse_address(host)
    if address is not None:
        reason = refusal(address)
        if reason:
            return f"{reason}; webhooks may not reach this network."
    return None
