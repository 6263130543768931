"""``GET /metrics`` for Prometheus, the HTTP and database-pool metrics, and the metrics server
of ``mars worker`` and ``mars relay``.

``/metrics`` answers only ``Authorization: Bearer <MARS_METRICS_TOKEN>``; with no token set
it is a 404, like any unknown path, so an instance tells nothing about itself. It is no part
of the API (not in the OpenAPI document, not rate limited) and is never cached.

Multiprocess mode (gunicorn). When ``PROMETHEUS_MULTIPROC_DIR`` is in the environment, every
process writes its values to files in that folder and ``/metrics`` adds up the files of all of
them (prometheus_client's ``MultiProcessCollector``), whichever worker answers. The contract
with the server that runs MARS (``deploy/gunicorn.conf.py`` keeps it):

- the variable is set, to an empty folder that only this service's processes write to, before
  any worker imports MARS (prometheus_client reads it at import), and the folder is emptied
  at every start of the service (values of an older run would be added in);
- when a worker exits, the master calls
  ``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` (gunicorn's ``child_exit``),
  so gauges of the processes alive (``livesum``) forget it; counters keep what it counted.

Without the variable, ``/metrics`` shows the answering process's own registry, which is right
for ``mars serve`` and for one process.

Gauges read from the database (jobs by task and state, the outbox's oldest pending event,
whether the database answers) are collected by :class:`DatabaseCollector` at scrape time, in
the process answering ``/metrics`` only, with a few cheap queries; never by the workers'
metrics servers, so Prometheus sees each once.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import prometheus_client
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request
from flask_smorest.spec.plugins import FlaskPlugin
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from werkzeug.exceptions import NotFound

from mars_server import metrics
from mars_server.db import db, utcnow
from mars_server.events.models import DEAD, QUEUED, RUNNING, Job, OutboxEvent
from mars_server.http.problems import problem_response
from mars_server.ops.models import SUCCEEDED, BackupRecord
from mars_server.state import mars_state

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Iterator

    from flask import Flask, Request
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
blueprint = Blueprint("mars_metrics", __name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The label of a request that matched no route (an unknown path, a method not allowed).
UNMATCHED = "unmatched"
#: Methods counted by name; any other (a client may send any token) counts as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: What the database gauges may cost a scrape on PostgreSQL, at most.
SCRAPE_STATEMENT_TIMEOUT_MS = 2000
JOB_STATES = (QUEUED, RUNNING, DEAD)

HTTP_REQUESTS = metrics.counter(
    "mars_http_requests_total",
    "HTTP requests answered, by operation (operationId or endpoint), method and status class.",
    ("operation", "method", "status"),
)
HTTP_DURATION = metrics.histogram(
    "mars_http_request_duration_seconds",
    "Time from the request's arrival in MARS to its response, by operation, method and status.",
    ("operation", "method", "status"),
)
DB_CONNECTIONS_IN_USE = metrics.gauge(
    "mars_database_connections_in_use",
    "Database connections checked out of the pool (summed over the processes alive).",
    multiprocess_mode="livesum",
)


# --- HTTP requests ------------------------------------------------------------------------


def _operation_ids(app: Flask) -> dict[tuple[str, str], str]:
    """``(endpoint, method)`` -> the operationId of every API operation (HEAD as its GET)."""
    api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    paths: dict[str, dict[str, Any]] = api.spec.to_dict().get("paths", {})
    found: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        operations = paths.get(FlaskPlugin.flaskpath2openapi(rule.rule), {})
        for method, operation in operations.items():
            if isinstance(operation, dict) and operation.get("operationId"):
                found[(rule.endpoint, method.upper())] = operation["operationId"]
                if method == "get":
                    found.setdefault((rule.endpoint, "HEAD"), operation["operationId"])
    return found


def _operation_label(app: Flask, req: Request) -> str:
    rule = req.url_rule
    if rule is None or not rule.endpoint:
        return UNMATCHED
    operations = app.extensions.get("mars_operation_ids")
    if operations is None:  # built once, at the first request: every route exists by then
        operations = app.extensions["mars_operation_ids"] = _operation_ids(app)
    return operations.get((rule.endpoint, req.method), rule.endpoint)


#: The children of the two HTTP metrics per label values: ``labels()`` costs more than the
#: update itself, and the values are few.
_http_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def observe_request(response: Response) -> Response:
    """after_request, registered first so it runs last: the status counted is the one sent."""
    # Each proxy access costs a context lookup: take the objects once.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    started = getattr(g._get_current_object(), "request_started", None)
    method = req.method if req.method in METHODS else "other"
    labels = (_operation_label(app, req), method, f"{response.status_code // 100}xx")
    children = _http_children.get(labels)
    if children is None:
        children = _http_children[labels] = (
            HTTP_REQUESTS.labels(*labels),
            HTTP_DURATION.labels(*labels),
        )
    children[0].inc()
    if started is not None:
        children[1].observe(time.perf_counter() - started)
    return response


# --- the database pool --------------------------------------------------------------------


def _checked_out(*_args: Any) -> None:
    DB_CONNECTIONS_IN_USE.inc()


def _checked_in(*_args: Any) -> None:
    DB_CONNECTIONS_IN_USE.dec()


def watch_pool(engine: sa.Engine) -> None:
    """Count the connections ``engine``'s pool has lent out (any pool class, SQLite's too)."""
    if not sa.event.contains(engine, "checkout", _checked_out):
        sa.event.listen(engine, "checkout", _checked_out)
        sa.event.listen(engine, "checkin", _checked_in)


# --- gauges read from the database at scrape time ----------------------------------------


class DatabaseCollector:
    """``mars_database_up``, ``mars_jobs{task,state}``, ``mars_outbox_oldest_pending_seconds``
    and the ``mars_backup_*`` gauges, read when collected: four indexed queries. Needs an
    app context."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mars_database_up", "1 when the database answered this scrape's queries, else 0."
        )
        try:
            counts, oldest, backups = self._read()
        except sa.exc.SQLAlchemyError as error:
            log.warning("metrics: the database did not answer: %s", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "mars_jobs",
            "Jobs by task and state: queued (due or waiting to be retried), running, dead.",
            labels=["task", "state"],
        )
        tasks = set(mars_state(self.app).tasks) | {task for task, _ in counts}
        for task in sorted(tasks):
            for state in JOB_STATES:
                jobs.add_metric([task, state], counts.get((task, state), 0))
        yield jobs
        waited = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "mars_outbox_oldest_pending_seconds",
            "How long the oldest event not yet relayed has waited (0: none waits).",
            value=max(waited, 0.0),
        )
        yield from backups

    @staticmethod
    def _backups(connection: sa.Connection) -> list[Metric]:
        last = connection.execute(
            sa.select(BackupRecord.finished_at, BackupRecord.size)
            .where(BackupRecord.status == SUCCEEDED)
            .order_by(BackupRecord.finished_at.desc())
            .limit(1)
        ).first()
        failed = sa.select(sa.func.count()).select_from(BackupRecord)
        failed = failed.where(BackupRecord.status != SUCCEEDED)
        if last is not None:
            failed = failed.where(BackupRecord.finished_at > last.finished_at)
        return [
            GaugeMetricFamily(
                "mars_backup_last_success_timestamp_seconds",
                "When the last good backup finished, in Unix time (0: there is none).",
                value=last.finished_at.timestamp() if last else 0.0,
            ),
            GaugeMetricFamily(
                "mars_backup_last_success_size_bytes",
                "The size of the last good backup's archive, in bytes.",
                value=float(last.size or 0) if last else 0.0,
            ),
            GaugeMetricFamily(
                "mars_backup_failures_since_success",
                "Backups that failed since the last good one.",
                value=float(connection.scalar(failed) or 0),
            ),
        ]

    def _read(self) -> tuple[dict[tuple[str, str], int], dt.datetime | None, list[Metric]]:
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                )
            rows = connection.execute(
                sa.select(Job.task, Job.status, sa.func.count())
                .where(Job.status.in_(JOB_STATES))
                .group_by(Job.task, Job.status)
            )
            counts = {(task, status): count for task, status, count in rows}
            oldest = connection.scalar(
                sa.select(sa.func.min(OutboxEvent.occurred_at)).where(
                    OutboxEvent.dispatched_at.is_(None)
                )
            )
            backups = self._backups(connection)
        return counts, oldest, backups


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def process_registry() -> CollectorRegistry:
    """What this process shows: every process's values in multiprocess mode, else its own."""
    if not multiprocess_mode():
        return prometheus_client.REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class _Forward:
    """Collects another registry's metrics, so one scrape can add the database's to them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def scrape_registry(app: Flask) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(process_registry()))
    registry.register(DatabaseCollector(app))
    return registry


# --- the endpoint -------------------------------------------------------------------------


def _authorized(expected: str) -> bool:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, expected.encode())


@blueprint.get("/metrics")
def metrics_view() -> Response:
    """The metrics in Prometheus's text format (or OpenMetrics, when asked for)."""
    expected = current_app.config["MARS"]["METRICS_TOKEN"]
    if not expected:
        raise NotFound()  # the answer of any unknown path: nothing says /metrics exists
    if not _authorized(expected):
        response = problem_response(
            401,
            detail="Send the metrics token as Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    else:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        response = Response(encoder(scrape_registry(app)), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Serve ``/metrics``, observe every request and the database pool.

    Call before the other ``after_request`` functions are registered: Flask runs them in
    reverse order, so this one sees the final status.
    """
    app.register_blueprint(blueprint)
    app.after_request(observe_request)
    with app.app_context():
        watch_pool(db.engine)


# --- worker and relay ---------------------------------------------------------------------


def start_metrics_server(port: int, host: str) -> None:
    """Serve this process's metrics (every process's, in multiprocess mode) over HTTP on
    ``host:port``, from a daemon thread, for ``mars worker`` and ``mars relay``."""
    prometheus_client.start_http_server(port, addr=host, registry=process_registry())
    log.info("metrics served on http://%s:%d/metrics", host, port)


def forget_this_process() -> None:
    """In multiprocess mode, drop this (exiting) process's live gauges."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())
