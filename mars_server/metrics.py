"""Prometheus metrics for the core and for plugins: :func:`counter`, :func:`histogram`,
:func:`gauge`.

A metric is made once per process, at import time of the module that uses it, and named
``mars_...``. Asking again for a name returns the metric already made, as long as its kind
and labels agree (a module imported twice, an app created twice in tests). Labels must take
few values: an operationId, a task's name, an outcome, never an id, a path or an address.

Under gunicorn the values live in files of ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, set up by ``deploy/gunicorn.conf.py``), so ``GET /metrics`` adds up every
worker's; elsewhere, in the process itself.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import prometheus_client
from prometheus_client.metrics import MetricWrapperBase

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DURATION_BUCKETS", "counter", "gauge", "histogram", "purged"]

#: Seconds, for request and delivery latencies: 5 ms up to a minute.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: How a gauge's values from several processes add up (prometheus_client's multiprocess modes).
GaugeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent"
]

# A ``<name>_created`` series beside every counter and histogram doubles what Prometheus
# stores and tells nothing a process's start time does not (multiprocess mode has none).
prometheus_client.disable_created_metrics()

_NAME = re.compile(r"^mars_[a-z][a-z0-9_]*$")
_made: dict[str, MetricWrapperBase] = {}
_lock = threading.Lock()
M = TypeVar("M", bound=MetricWrapperBase)


def _make(kind: type[M], name: str, documentation: str, labelnames: Sequence[str], **kw: Any) -> M:
    if not _NAME.match(name):
        raise ValueError(f"metric name {name!r} must match {_NAME.pattern}")
    with _lock:
        made = _made.get(name)
        if made is None:
            made = kind(name, documentation, labelnames=tuple(labelnames), **kw)
            _made[name] = made
        elif type(made) is not kind or made._labelnames != tuple(labelnames):
            raise ValueError(
                f"metric {name!r} is already a {type(made).__name__} with labels {made._labelnames}"
            )
        return made


def counter(
    name: str, documentation: str, labelnames: Sequence[str] = ()
) -> prometheus_client.Counter:
    """A count that only goes up (``name`` ends in ``_total``)."""
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    # prometheus_client adds ``_total`` itself and exposes the name with it.
    return _make(prometheus_client.Counter, name, documentation, labelnames)


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    buckets: Sequence[float] = DURATION_BUCKETS,
) -> prometheus_client.Histogram:
    """Observations in buckets; for durations, in seconds (``name`` ends in ``_seconds``)."""
    return _make(prometheus_client.Histogram, name, documentation, labelnames, buckets=buckets)


def gauge(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    multiprocess_mode: GaugeMode = "livesum",
) -> prometheus_client.Gauge:
    """A value that goes up and down. ``multiprocess_mode`` says how the values of several
    processes add up: ``livesum`` (the default) sums the processes alive now."""
    return _make(
        prometheus_client.Gauge,
        name,
        documentation,
        labelnames,
        multiprocess_mode=multiprocess_mode,
    )


def purged(what: str, count: int) -> None:
    """Count ``count`` rows of ``what`` (``events``, ``notifications``...) deleted because
    their retention ended: ``mars_retention_purged_total{what}`` (docs/privacy.md)."""
    if count:
        _PURGED.labels(what=what).inc(count)


_PURGED = counter(
    "mars_retention_purged_total", "Rows deleted because their retention ended, by kind.", ["what"]
)
