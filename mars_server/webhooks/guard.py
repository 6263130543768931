"""Which addresses webhooks may reach: the server-side request forgery (SSRF) guard.

A webhook URL is chosen by a user, and MARS sends requests to it from inside its own network.
Unless ``MARS_WEBHOOKS_ALLOW_PRIVATE`` is set, nothing but globally routable unicast
addresses is allowed: not loopback, private, link-local (the cloud metadata service at
169.254.169.254), shared (100.64.0.0/10), multicast, reserved or unspecified ones, nor those
written as IPv4-mapped, NAT64 or 6to4 IPv6 addresses.

:func:`refusal` is the authority: the transport calls it on every address a host name
resolves to, at connect time, and connects to that very address (DNS cannot change its
answer in between). :func:`url_problem` refuses early, when an endpoint is created or changed,
what would be refused then: internal addresses, names of this machine (``localhost.``,
``*.localhost``, ``ip6-localhost``...), and names that resolve to an internal address now.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SHARED = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SCHEMES = ("http", "https")
SETTING = "MARS_WEBHOOKS_ALLOW_PRIVATE"
#: Said by every early refusal: the way out, in development.
ALLOW_HINT = f"In development, {SETTING}=true allows it."
_UNREACHABLE = f"webhooks may not reach this network. {ALLOW_HINT}"
#: Names of this machine, whatever DNS says (RFC 6761 ``.localhost``, and what Linux
#: distributions put in /etc/hosts), compared without a final dot and case.
LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)
#: How long an endpoint's creation waits for its host name to resolve; past this, or when
#: it does not resolve, the name is accepted and judged at connect time.
RESOLVE_SECONDS = 2.0


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
    if is_local_name(host):
        return f"{host} is a name of this machine (a loopback address); {_UNREACHABLE}"
    address = parse_address(host)
    if address is not None:
        reason = refusal(address)
        return f"{reason}; {_UNREACHABLE}" if reason else None
    for found in resolve(host, port or (443 if parts.scheme.lower() == "https" else 80)):
        if refusal(found):
            # Which address is not said: the API must not become a lookup of internal names.
            return (
                f"{host} resolves to an internal address (loopback, private, link-local or "
                f"reserved); {_UNREACHABLE}"
            )
    return None


def is_local_name(host: str) -> bool:
    """Whether ``host`` names this machine by convention (``localhost.``, ``a.localhost``)."""
    name = host.lower().removesuffix(".")
    return name in LOCAL_NAMES or name.endswith(".localhost")


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to now; none when it does not resolve within
    :data:`RESOLVE_SECONDS`.

    The lookup runs in a daemon thread: a slow resolver must not hold the request that
    creates an endpoint (getaddrinfo has no timeout of its own).
    """
    found: list[IPAddress] = []

    def lookup() -> None:
        try:
            answers = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        found.extend(
            ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in answers
        )

    thread = threading.Thread(target=lookup, name="mars-webhooks-resolve", daemon=True)
    thread.start()
    thread.join(RESOLVE_SECONDS)
    return [] if thread.is_alive() else list(found)
