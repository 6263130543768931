"""The embedded worker: relays events and runs jobs in a thread pool.

``mars worker`` runs one in the foreground; ``mars serve`` runs one beside the development
server. Any number of workers may share one database.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from mars_server.db import db
from mars_server.events import jobs, relay

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask

log = logging.getLogger(__name__)


class Worker:
    """Relay events and run due jobs until stopped.

    :param execute: run jobs here (embedded backend); ``False`` for the Celery relay,
        which hands them to the broker with ``send`` instead.
    """

    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int | None = None,
        poll_seconds: float | None = None,
        execute: bool = True,
        send: Callable[[str], None] | None = None,
    ) -> None:
        settings = app.config["MARS"]
        self.app = app
        self.concurrency = concurrency or settings["WORKER_CONCURRENCY"]
        self.poll_seconds = poll_seconds or settings["WORKER_POLL_SECONDS"]
        self.execute = execute
        self.send = send
        self.stopping = threading.Event()
        self._running: dict[Future[str], str] = {}  # future -> claim
        self._lock = threading.Lock()
        self.lease_seconds = settings["JOBS_LEASE_SECONDS"]
        self._renewed = time.monotonic()

    # --- one pass ---------------------------------------------------------------------------

    def relay_once(self) -> int:
        """Dispatch events, enqueue due schedules, hand jobs to the broker; how much was done."""
        with self.app.app_context():
            try:
                done = relay.dispatch_events()
                done += relay.enqueue_schedules()
                if self.send is not None:
                    done += relay.hand_to_broker(self.send)
                return done
            finally:
                db.session.remove()

    def claim(self, limit: int, *, heartbeat: bool = False) -> list[jobs.Claimed]:
        with self.app.app_context():
            try:
                return jobs.claim_due(limit, heartbeat=heartbeat)
            finally:
                db.session.remove()

    def heartbeat(self) -> None:
        """Renew the leases of the jobs in hand, a third of a lease before they end."""
        if time.monotonic() - self._renewed < self.lease_seconds / 3:
            return
        self._renewed = time.monotonic()
        with self._lock:
            claims = set(self._running.values())
        if claims:
            with self.app.app_context():
                try:
                    jobs.renew_leases(claims)
                finally:
                    db.session.remove()

    def run_until_idle(self, *, max_seconds: float = 60.0) -> int:
        """Relay and run jobs in this thread until nothing is due; return how many ran.

        For tests and ``mars jobs run``; jobs retried for later are not waited for.
        """
        ran = 0
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            self.relay_once()
            claimed = self.claim(self.concurrency)
            if not claimed:
                return ran
            for job in claimed:
                jobs.run_in_app(self.app, job)
                ran += 1
        return ran

    # --- forever ----------------------------------------------------------------------------

    def run(self) -> None:
        """Work until :meth:`stop`; then finish the jobs in hand and return."""
        log.info(
            "worker %s started (%s, %d threads)",
            jobs.worker_name(),
            "running jobs" if self.execute else "relaying to the broker",
            self.concurrency,
        )
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="mars-job") as pool:
            while not self.stopping.is_set():
                busy = False
                try:
                    busy = self.relay_once() > 0
                    if self.execute:
                        self.heartbeat()
                        busy = self._fill(pool) or busy
                except Exception:  # the database went away: keep trying, slowly
                    log.exception("worker pass failed; retrying in %.1fs", self.poll_seconds)
                    busy = False
                if not busy:
                    wait = min(self.poll_seconds, self.lease_seconds / 3)
                    jobs.work_available.wait(wait)
                    jobs.work_available.clear()
            log.info("worker stopping: finishing %d job(s) in hand", len(self._running))
        log.info("worker stopped")

    def _fill(self, pool: ThreadPoolExecutor) -> bool:
        with self._lock:
            free = self.concurrency - len(self._running)
        if free <= 0:
            return False  # wait: a finishing job sets work_available
        claimed = self.claim(free, heartbeat=True)
        for job in claimed:
            future = pool.submit(jobs.run_in_app, self.app, job)
            with self._lock:
                self._running[future] = job.claim
            future.add_done_callback(self._done)
        return bool(claimed)

    def _done(self, future: Future[str]) -> None:
        with self._lock:
            self._running.pop(future, None)
        jobs.work_available.set()  # a free slot: look for more work now

    def stop(self) -> None:
        self.stopping.set()
        jobs.work_available.set()

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="mars-worker", daemon=True)
        thread.start()
        return thread
