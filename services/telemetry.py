"""Prometheus metrics: events appended and projected, projector position and lag, HTTP timings;
records quarantined, projector up and its restarts; and the incidents themselves (open,
unacknowledged, open breaches, MTTA and MTTR summaries), for alerts and dashboards.

HTTP request counts and latencies are counted by `services.api.http_metrics` (per route
template); the rest is counted here and read off the projectors at scrape time.
The incident families are read from the read models at scrape time too (`projections.gauges`),
by the `/metrics` route, off the event loop, and written here in the text exposition format.
"""

import math
import weakref
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.gauges import WINDOW, IncidentGauges
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


_WINDOW_DAYS: Final = WINDOW.days
_QUANTILES: Final = (("0.5", "p50_s"), ("0.9", "p90_s"))


def incident_families(gauges: IncidentGauges) -> list[Metric]:
    """The incident gauges and summaries, every severity and breach kind present."""
    opened = GaugeMetricFamily(
        "incidents_open",
        "Open incidents (not resolved, not closed) by current severity, as on the status board",
        labels=["severity"],
    )
    unacked = GaugeMetricFamily(
        "incidents_unacknowledged",
        "Open incidents never acknowledged, by current severity",
        labels=["severity"],
    )
    oldest = GaugeMetricFamily(
        "incidents_unacknowledged_oldest_seconds",
        "Seconds since detection of the oldest open unacknowledged incident (0 when none)",
        labels=["severity"],
    )
    for severity, count in gauges.open.items():
        opened.add_metric([severity], count)
        unacked.add_metric([severity], gauges.unacknowledged.get(severity, 0))
        oldest.add_metric([severity], gauges.oldest_unacknowledged_s.get(severity, 0.0))
    breached = GaugeMetricFamily(
        "incidents_open_breaches",
        "Policy breaches still judged against now (GET /v1/breaches?open_only=true), by kind",
        labels=["kind"],
    )
    for kind, count in gauges.open_breaches.items():
        breached.add_metric([kind], count)
    families: list[Metric] = [opened, unacked, oldest, breached]
    for metric, summaries in gauges.summaries.items():
        name = f"incidents_{metric}_seconds"
        family = Metric(
            name,
            f"{metric.upper()} (definitions at /v1/metrics/definitions) of the incidents "
            f"declared in the last {_WINDOW_DAYS} days, by current severity; a window, "
            "not a counter: use it as it is, not with rate()",
            "summary",
        )
        for severity in gauges.open:
            summary = summaries.get(severity)
            labels = {"severity": severity}
            for quantile, field in _QUANTILES:
                value = getattr(summary, field) if summary is not None else None
                family.add_sample(
                    name, labels | {"quantile": quantile}, math.nan if value is None else value
                )
            family.add_sample(f"{name}_count", labels, summary.count if summary else 0)
            family.add_sample(f"{name}_sum", labels, summary.sum_s if summary else 0.0)
        families.append(family)
    return families


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The process's metrics, then `extra`, in the Prometheus text format."""
    return generate_latest(REGISTRY) + generate_latest(_Families(extra))
