"""The embedded worker: relays events and runs jobs in a thread pool.

``mars worker`` runs one in the foreground; ``mars serve`` runs one beside the development
server. Any number of workers may share one database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from mars_server.db import db, utcnow
from mars_server.events import jobs, relay

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable

    from flask import Flask

log = logging.getLogger(__name__)


class Worker:
    """Relay events and run due jobs until stopped.

    It keeps up to twice ``concurrency`` jobs in hand: while every thread is busy, the
    next jobs are already claimed, so a claim takes many jobs at once instead of one per
    finished job. Their leases are renewed like those of the running ones.

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
        self._in_hand: dict[Future[str], jobs.Claimed] = {}
        self._lock = threading.Lock()
        self.lease_seconds = settings["JOBS_LEASE_SECONDS"]
        self._renewed = time.monotonic()
        self._relayed = -math.inf  # when the relay last looked for events (monotonic)
        self._more_events = False
        self._schedules_due: dt.datetime | None = None
        self._schedules_known = False

    # --- one pass ---------------------------------------------------------------------------

    def relay_once(self, *, force: bool = True) -> int:
        """Dispatch events, enqueue due schedules, hand jobs to the broker; how much was done.

        Without ``force`` each step runs only when it may find something: events when this
        process committed some, when the last dispatch left more, or once per poll; schedules
        when the earliest one is due.
        """
        now = time.monotonic()
        woken = jobs.events_available.is_set()
        dispatch = force or woken or self._more_events or now - self._relayed >= self.poll_seconds
        schedules = (
            force
            or not self._schedules_known
            or (self._schedules_due is not None and self._schedules_due <= utcnow())
        )
        with self.app.app_context():
            try:
                done = 0
                if dispatch:
                    jobs.events_available.clear()
                    self._relayed = now
                    dispatched = relay.dispatch_events()
                    self._more_events = dispatched >= relay.BATCH
                    done += dispatched
                if schedules:
                    enqueued, self._schedules_due = relay.enqueue_schedules()
                    self._schedules_known = True
                    done += enqueued
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
            claims = {job.claim for job in self._in_hand.values()}
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
        """Work until :meth:`stop`; then finish the jobs running, give back the others, return."""
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
                    busy = self.relay_once(force=False) > 0
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
            self._give_back_waiting()
            log.info("worker stopping: finishing %d job(s) in hand", len(self._in_hand))
        log.info("worker stopped")

    def _fill(self, pool: ThreadPoolExecutor) -> bool:
        with self._lock:
            in_hand = len(self._in_hand)
        if in_hand >= self.concurrency:
            return False  # every thread has work: a finishing job sets work_available
        claimed = self.claim(2 * self.concurrency - in_hand, heartbeat=True)
        for job in claimed:
            future = pool.submit(jobs.run_in_app, self.app, job)
            with self._lock:
                self._in_hand[future] = job
            future.add_done_callback(self._done)
        return bool(claimed)

    def _done(self, future: Future[str]) -> None:
        with self._lock:
            self._in_hand.pop(future, None)
        jobs.work_available.set()  # a free slot: look for more work now

    def _give_back_waiting(self) -> None:
        """Stopping: the claimed jobs no thread started yet go back to the queue at once."""
        with self._lock:
            in_hand = list(self._in_hand.items())
        # Outside the lock: a cancelled future runs its done callback (``_done``) at once.
        waiting = [job for future, job in in_hand if future.cancel()]
        if not waiting:
            return
        with self.app.app_context():
            try:
                jobs.release(waiting)
            except Exception:  # their leases end on their own
                log.exception("could not give back %d claimed job(s)", len(waiting))
            finally:
                db.session.remove()

    def stop(self) -> None:
        self.stopping.set()
        jobs.work_available.set()

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="mars-worker", daemon=True)
        thread.start()
        return thread
