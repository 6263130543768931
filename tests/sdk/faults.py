"""A fault-injecting HTTP proxy on loopback, in front of a live MARS.

``FaultProxy(target)`` forwards every request to ``target`` unless a queued
:class:`Fault` matches it first: then it resets the connection (before or after
forwarding), or answers a status of its own, or adds headers to MARS's answer.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import requests

from mars_server.testing import SHUTDOWN_POLL_SECONDS

HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "host"}


@dataclass
class Fault:
    """What to do to the next request of ``method`` (any method when ``None``).

    - ``reset``: close the connection with a TCP reset, MARS never sees the request;
    - ``forward_then_reset``: MARS handles it, the client never gets the answer;
    - ``status``: answer ``status`` with a MARS-shaped problem and ``headers``;
    - ``forward``: MARS answers, with ``headers`` added;
    - ``truncate``: MARS answers, and the client gets half of its body, then the end.
    """

    action: Literal["reset", "forward_then_reset", "status", "forward", "truncate"]
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    fault: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = proxy.take(self.command)
        proxy.record(
            Seen(self.command, self.path, dict(self.headers.items()), fault and fault.action)
        )
        if fault is not None and fault.action == "reset":
            return self._reset()
        if fault is not None and fault.action == "status":
            problem = {
                "type": "about:blank",
                "title": "Injected",
                "status": fault.status,
                "detail": f"The fault proxy answered {fault.status}.",
                "request_id": self.headers.get("X-Request-ID", ""),
            }
            return self._answer(fault.status, fault.headers, json.dumps(problem).encode())
        upstream = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
        if fault is not None and fault.action == "forward_then_reset":
            return self._reset()
        if fault is not None and fault.action == "truncate":
            return self._truncated(upstream.status_code, upstream.content)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if fault is not None:
            headers.update(fault.headers)
        self._answer(upstream.status_code, headers, upstream.content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Type" not in headers and body:
            self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _truncated(self, status: int, body: bytes) -> None:
        """Promise the whole body, send half, hang up."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    proxy: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the resets this server makes on purpose


class FaultProxy:
    """Listens on 127.0.0.1 until :meth:`close`; ``url`` is its base URL."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.seen: list[Seen] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._upstream = requests.Session()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True
        )
        self._thread.start()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def take(self, method: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.method in (None, method):
                    return self._faults.pop(index)
        return None

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> requests.Response:
        headers = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"
        return self._upstream.request(
            method, self.target + path, headers=headers, data=body, timeout=30
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
        self._upstream.close()
