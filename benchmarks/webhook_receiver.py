"""A fast loopback webhook receiver for ``bench_webhook_deliveries.py``.

Each of ``--procs`` processes runs an asyncio HTTP/1.1 server on its own ``SO_REUSEPORT``
socket (the kernel spreads connections over them), keeps connections alive, checks the
Standard Webhooks signature of each POST against the secrets in ``BENCH_WEBHOOK_SECRETS``
(space-separated ``whsec_...``; none: not checked), answers ``204 No Content`` and
remembers ``webhook-id``, the time it arrived (``time.time_ns()``) and whether the signature
was good. On SIGTERM or SIGINT each process writes ``<out>/ids-<n>.txt``, one line per
request: ``<webhook-id> <ns> <1|0>``, then exits.

    python benchmarks/webhook_receiver.py --port 8765 --procs 2 --out /tmp/received
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import signal
import socket
import sys
import time
from pathlib import Path

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n"
CLOSE = b"HTTP/1.1 204 No Content\r\nServer: bench\r\nConnection: close\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Hooks(asyncio.Protocol):
    """One connection: requests parsed from the buffer, answered in order."""

    def __init__(self, seen: list[tuple[str, int, int]], keys: list[bytes]) -> None:
        self.seen = seen
        self.keys = keys
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._answer(BAD, close=True)
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            self._handle(lines[0], headers, body)

    def _handle(self, request_line: str, headers: dict[str, str], body: bytes) -> None:
        if request_line.startswith("POST "):
            webhook_id = headers.get("webhook-id", "-")
            self.seen.append((webhook_id, time.time_ns(), self._signed(webhook_id, headers, body)))
        close = headers.get("connection", "").lower() == "close"
        self._answer(CLOSE if close else NO_CONTENT, close=close)

    def _signed(self, webhook_id: str, headers: dict[str, str], body: bytes) -> int:
        if not self.keys:
            return 1
        content = f"{webhook_id}.{headers.get('webhook-timestamp', '')}.".encode() + body
        given = {
            part.split(",", 1)[1]
            for part in headers.get("webhook-signature", "").split()
            if part.startswith("v1,")
        }
        for key in self.keys:
            digest = hmac.new(key, content, hashlib.sha256).digest()
            if base64.b64encode(digest).decode() in given:
                return 1
        return 0

    def _answer(self, data: bytes, *, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(data)
        if close:
            self.transport.close()


def keys_from_environment() -> list[bytes]:
    secrets = os.environ.get("BENCH_WEBHOOK_SECRETS", "").split()
    return [base64.b64decode(s.removeprefix("whsec_")) for s in secrets]


def serve(port: int, out: Path, number: int) -> None:
    seen: list[tuple[str, int, int]] = []
    keys = keys_from_environment()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(_signum: int, _frame: object) -> None:
            # A plain handler, not loop.add_signal_handler: it stays installed after the
            # loop has closed, so a second SIGTERM (the group's and the parent's) cannot
            # kill the process while it writes its file.
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        server = await loop.create_server(lambda: Hooks(seen, keys), sock=sock)
        async with server:
            await stop.wait()

    asyncio.run(main())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    lines = "".join(f"{webhook_id} {ns} {ok}\n" for webhook_id, ns, ok in seen)
    (out / f"ids-{number}.txt").write_text(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    children = []
    for number in range(args.procs):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(args.port, args.out, number)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        status = status or (1 if code else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
