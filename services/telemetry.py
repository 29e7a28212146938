"""Prometheus metrics: events appended and projected, projector position and lag, HTTP timings;
records quarantined, projector up and its restarts.

HTTP request counts and latencies come from Litestar's Prometheus middleware (per route
template); the rest is counted here and read off the projectors at scrape time.
"""

import weakref
from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.projector import Projector

APPENDED: Final = Counter(
    "incidents_events_appended", "Events this process appended to the log", ["source"]
)


class _Projectors(Collector):
    def __init__(self) -> None:
        self.watched: weakref.WeakSet[Projector] = weakref.WeakSet()
        self.current: weakref.ref[Projector] | None = None  # the one serving reads now

    def collect(self) -> Iterator[Metric]:
        projectors = list(self.watched)
        current = self.current() if self.current else None
        yield CounterMetricFamily(
            "incidents_events_projected",
            "Events this process folded into its read models",
            value=sum(p.projected for p in projectors),
        )
        yield GaugeMetricFamily(
            "incidents_projector_checkpoint",
            "Last stream sequence in the read models",
            value=max((p.checkpoint for p in projectors), default=0),
        )
        yield GaugeMetricFamily(
            "incidents_projector_lag",
            "Log records not yet in the read models, as last seen by the projector",
            value=max((p.pending for p in projectors), default=0),
        )
        yield CounterMetricFamily(
            "incidents_records_quarantined",
            "Log records that do not decode, quarantined by this process",
            value=sum(p.quarantined_here for p in projectors),
        )
        yield GaugeMetricFamily(
            "incidents_quarantined_records",
            "Records in the read models' quarantine table",
            value=current.quarantined if current else 0,
        )
        yield GaugeMetricFamily(
            "incidents_projector_up",
            "1 while the projector runs, 0 from a failure until it moves on again",
            value=1 if current is not None and current.failure is None else 0,
        )
        yield CounterMetricFamily(
            "incidents_projector_restarts",
            "Times a failed projector was started again",
            value=sum(p.restarts for p in projectors),
        )


_PROJECTORS: Final = _Projectors()
REGISTRY.register(_PROJECTORS)


def watch(projector: Projector) -> None:
    """Count `projector` in, and make it the current one (a replay swaps in a new one)."""
    _PROJECTORS.watched.add(projector)
    _PROJECTORS.current = weakref.ref(projector)
