"""The baseline of ``bench_webhook_deliveries.py``: a plain Python loop POSTing webhooks.

``--threads`` threads, each with its own ``requests.Session`` (kept-alive connections),
take ``(webhook-id, body)`` pairs from a JSON-lines file in turn, sign each with MARS's own
Standard Webhooks code (``mars_server.webhooks.signing.headers``, the secret from
``BENCH_WEBHOOK_SECRETS``) and POST it to ``--url``. No database, no jobs, no retries: what
sending the same requests costs a Python process, and so the most a Python worker could
deliver on this machine. Prints ``sent <n> failed <m> seconds <s>``.

    python benchmarks/webhook_loop.py --url http://127.0.0.1:8765/hook --bodies bodies.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import requests

from mars_server.webhooks.signing import headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    secrets = os.environ["BENCH_WEBHOOK_SECRETS"].split()[:1]
    items = [json.loads(line) for line in args.bodies.read_text().splitlines() if line]
    lock = threading.Lock()
    position = 0
    failed = 0

    def work() -> None:
        nonlocal position, failed
        session = requests.Session()
        while True:
            with lock:
                if position >= len(items):
                    break
                webhook_id, body = items[position]
                position += 1
            sent = headers(webhook_id, int(time.time()), body, secrets)
            response = session.post(args.url, data=body.encode(), headers=sent, timeout=15)
            if not 200 <= response.status_code < 300:
                with lock:
                    failed += 1
        session.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"sent {len(items)} failed {failed} seconds {time.perf_counter() - started:.3f}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
