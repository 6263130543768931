"""Sending one webhook request: a shared urllib3 pool whose connections vet their address.

- Each new connection resolves its host itself, refuses it when any address is not allowed
  (see :mod:`mars_server.webhooks.guard`) and connects to the address it vetted: a DNS answer
  that changes between the check and the connection (DNS rebinding) changes nothing. The
  ``Host`` header, TLS SNI and the certificate check still use the host name.
- Redirects are not followed, proxies from the environment are not used, and nothing is
  retried here: the job's schedule retries.
- An attempt takes at most ``timeout`` seconds in all: a :class:`_Reaper` thread shuts the
  socket of a request still running at its deadline, whatever phase it is in (a receiver
  that trickles its answer one byte at a time included). Only the first ``max_bytes`` of
  the answer are read.
- Connections are kept per host (``maxsize`` each, usually the worker's concurrency) and the
  pool is shared by every thread of the process.
- Each attempt notes how far it got (resolving, connecting, the TLS handshake, waiting for
  the answer), so that :mod:`mars_server.webhooks.failures` says what failed.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import heapq
import ipaddress
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.timeout import Timeout
from urllib3.util.url import parse_url

from mars_server.db import utcnow
from mars_server.webhooks import failures
from mars_server.webhooks.guard import SCHEMES, SETTING, refusal

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The longest ``Retry-After`` honoured: a receiver cannot park a delivery for weeks.
MAX_RETRY_AFTER = 24 * 3600.0
#: How much of the answer the delivery log keeps.
SNIPPET_BYTES = 1024


class DestinationRefused(HTTPError):
    """The host resolves to an address webhooks may not reach (not an ``OSError``: urllib3
    lets it through unchanged)."""


# --- Deadlines ------------------------------------------------------------------------------


class _Ticket:
    """One attempt's deadline, the socket to shut when it passes, and how far it got."""

    __slots__ = ("deadline", "done", "fired", "lock", "sock", "stage")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.done = False
        self.fired = False
        #: One of :mod:`~mars_server.webhooks.failures`' stages, to tell what timed out.
        self.stage = failures.ANSWER

    def attach(self, sock: socket.socket | None) -> None:
        with self.lock:
            if self.done:
                return
            self.sock = sock
            if self.fired:
                _shut(sock)

    def expire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.fired = True
            _shut(self.sock)

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.sock = None


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    # socket.socket's own shutdown, also for an SSLSocket: the blocked reader in the other
    # thread gets an end of file, and the TLS object stays in place for it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Reaper:
    """A daemon thread that expires tickets at their deadlines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh (also in a forked child, where the parent's thread does not run)."""
        self._heap: list[tuple[float, int, _Ticket]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, ticket: _Ticket) -> None:
        with self._wakeup:
            heapq.heappush(self._heap, (ticket.deadline, next(self._order), ticket))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mars-webhooks-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is ticket:
                self._wakeup.notify()

    def _run(self) -> None:
        with self._wakeup:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].expire()
                self._wakeup.wait(self._heap[0][0] - now if self._heap else None)


_reaper = _Reaper()
os.register_at_fork(after_in_child=_reaper.reset)
_current_ticket: contextvars.ContextVar[_Ticket | None] = contextvars.ContextVar(
    "mars_webhook_ticket", default=None
)


# --- Connections that vet their address -------------------------------------------------------


class _GuardedConnectionMixin:
    """Resolve, vet every address, connect to a vetted one (urllib3's ``_new_conn``)."""

    allow_private = False
    # Provided by urllib3's HTTPConnection:
    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        ticket = _current_ticket.get()
        _reach(ticket, failures.RESOLVE)
        try:
            found = socket.getaddrinfo(self._dns_host, self.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error  # type: ignore[arg-type]
        if ticket is not None and ticket.fired:  # the lookup itself took the whole time
            raise ConnectTimeoutError(self, f"Resolving {self.host} timed out.")
        if not self.allow_private:
            for *_, sockaddr in found:
                reason = refusal(ipaddress.ip_address(sockaddr[0]))
                if reason:
                    raise DestinationRefused(
                        f"{self.host} resolves to {sockaddr[0]}: {reason}, which webhooks "
                        f"may not reach ({SETTING} is off)."
                    )
        _reach(ticket, failures.CONNECT)
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in found:
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if isinstance(self.timeout, (int, float)) or self.timeout is None:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                _attach(sock)
                sock.connect(sockaddr)
            except TimeoutError as error:
                sock.close()
                raise ConnectTimeoutError(self, f"Connecting to {self.host} timed out.") from error
            except OSError as error:
                sock.close()
                last = error
                continue
            _reach(ticket, failures.TLS if isinstance(self, HTTPSConnection) else failures.ANSWER)
            return sock
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection: {last}",
        ) from last

    def request(self, *args: Any, **kwargs: Any) -> None:
        # What remains is sending and waiting for the answer (for http:// a new connection
        # is opened from here on: its _new_conn tells the stages before).
        _reach(_current_ticket.get(), failures.ANSWER)
        _attach(getattr(self, "sock", None))
        super().request(*args, **kwargs)  # type: ignore[misc]


def _reach(ticket: _Ticket | None, stage: str) -> None:
    if ticket is not None:
        ticket.stage = stage


def _attach(sock: socket.socket | None) -> None:
    ticket = _current_ticket.get()
    if ticket is not None:
        ticket.attach(sock)


def _pool_classes(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    connection = type(
        "GuardedHTTPConnection",
        (_GuardedConnectionMixin, HTTPConnection),
        {"allow_private": allow_private},
    )
    tls_connection = type(
        "GuardedHTTPSConnection",
        (_GuardedConnectionMixin, HTTPSConnection),
        {"allow_private": allow_private},
    )
    return {
        "http": type(
            "GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": connection}
        ),
        "https": type(
            "GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": tls_connection}
        ),
    }


# --- Sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the answer's status, or the error that prevented one."""

    status: int | None
    duration_ms: int
    error: str | None = None
    #: Seconds the receiver asked to wait (``Retry-After`` on 429 or 503).
    retry_after: float | None = None
    body: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Transport:
    """Posts webhook bodies; one per app, shared by every thread."""

    def __init__(
        self, *, allow_private: bool, timeout: float, max_bytes: int, maxsize: int = 8
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.pool = urllib3.PoolManager(num_pools=256, maxsize=maxsize, block=False)
        self.pool.pool_classes_by_scheme = _pool_classes(allow_private)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST ``body`` to ``url``; never raises for what the network or receiver does."""
        started = time.perf_counter()
        ticket = _Ticket(time.monotonic() + self.timeout)
        token = _current_ticket.set(ticket)
        _reaper.add(ticket)
        try:
            return self._post(url, body, headers, ticket, started)
        finally:
            ticket.finish()
            _current_ticket.reset(token)

    def _post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        ticket: _Ticket,
        started: float,
    ) -> Outcome:
        def took() -> int:
            return round((time.perf_counter() - started) * 1000)

        if url.split(":", 1)[0].lower() not in SCHEMES:
            return Outcome(None, took(), "Only http:// and https:// URLs are delivered to.")
        try:
            response = self.pool.urlopen(
                "POST",
                url,
                body=body,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=Timeout(connect=self.timeout, read=self.timeout),
            )
        except DestinationRefused as refused:
            return Outcome(None, took(), f"Refused: {refused}")
        except Exception as failure:
            return Outcome(None, took(), self._describe(failure, ticket, url))
        status = response.status
        try:
            data = response.read(self.max_bytes + 1, decode_content=False)
            complete = len(data) <= self.max_bytes and not ticket.fired
        except Exception:  # the status is what counts; the connection is not reused
            data, complete = b"", False
        finally:
            if not complete:
                response.close()
            response.release_conn()
        error = None
        if 300 <= status < 400:
            location = (response.headers.get("Location") or "")[:500]
            error = f"Redirects are not followed ({status} to {location or 'nowhere'})."
        elif not 200 <= status < 300:
            error = f"The receiver answered {status}."
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Outcome(
            status,
            took(),
            error,
            retry_after,
            data[:SNIPPET_BYTES].decode("utf-8", "replace") if data else None,
        )

    def _describe(self, error: Exception, ticket: _Ticket, url: str) -> str:
        """The error in words for the endpoint's owner; never the URL (it may hold a token)."""
        try:
            parts = parse_url(url)
        except LocationParseError:  # urlopen failed on the very same
            return f"The request failed: {type(error).__name__}."
        return failures.describe(
            error,
            stage=ticket.stage,
            timed_out=ticket.fired,
            host=parts.host or "?",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            timeout=self.timeout,
        )

    def close(self) -> None:
        self.pool.clear()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value (seconds or an HTTP date), capped; else ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - utcnow()).total_seconds()), MAX_RETRY_AFTER)
