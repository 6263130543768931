"""A real HTTP server on loopback that records what webhooks send it, and answers as told."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mars_server.testing import SHUTDOWN_POLL_SECONDS


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: ``time.monotonic()`` when the request had arrived whole
    arrived: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return self.body.decode()

    def json_payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Send the headers, then the body one byte per ``trickle`` seconds.
    trickle: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The answer in one segment, at once: not held back by Nagle's algorithm.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        answer = self.server.receiver.record(received)
        if answer.delay:
            time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.trickle:
            for byte in answer.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(answer.trickle)
        else:
            try:
                self.wfile.write(answer.body)
                self.wfile.flush()
            except OSError:  # the client closed the connection before taking it all
                self.server.receiver.cut_short += 1
                raise

    do_POST = do_GET = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: Receiver

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (a timeout under test) is not an error here


class _Server6(_Server):
    address_family = socket.AF_INET6


class Receiver:
    """``Receiver()`` listens on 127.0.0.1 (``ipv6=True``: ::1) until ``close()``.

    ``answer(path, Answer(...), ...)`` queues answers for a path: each request takes the
    next one, and the last one repeats. By default every request gets 200.
    """

    def __init__(self, *, ipv6: bool = False) -> None:
        cls = _Server6 if ipv6 else _Server
        self.server = cls(("::1" if ipv6 else "127.0.0.1", 0), _Handler)
        self.server.receiver = self
        self.port = self.server.server_address[1]
        self.requests: list[Received] = []
        #: answers the client hung up on before their whole body was sent
        self.cut_short = 0
        self._answers: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True
        )
        self._thread.start()
        self.host = "[::1]" if ipv6 else "127.0.0.1"

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def answer(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._answers[path] = list(answers)

    def record(self, received: Received) -> Answer:
        with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
            queued = self._answers.get(received.path.split("?")[0]) or [Answer()]
            return queued.pop(0) if len(queued) > 1 else queued[0]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
