"""What `/metrics` says about incidents, read from the read models at scrape time: open and
unacknowledged incidents by severity, open breaches by kind, MTTA and MTTR of the incidents
declared in the last 30 days by severity.

Three queries, each the one the API answers from (the `status_board` view, `breaches`, `mttx`),
so a dashboard and `incidents list`, `incidents breaches`, `incidents mttr` agree; the open
breaches are counted by kind inside the breach query (`breaches.open_counts`), not listed.
"""

from datetime import datetime, timedelta
from typing import Final

import duckdb
import msgspec

from events.policy import Policy
from events.schema import Severity
from projections import breaches
from projections.groups import GroupBy
from projections.metrics import mttx, to_us

WINDOW: Final = timedelta(days=30)
SUMMARIZED: Final = ("mtta", "mttr")


class Summary(msgspec.Struct, frozen=True):
    """One metric of one severity over the window: how many incidents have it, their sum."""

    count: int
    sum_s: float
    p50_s: float | None
    p90_s: float | None


class IncidentGauges(msgspec.Struct, frozen=True, kw_only=True):
    open: dict[str, int]  # by severity: unresolved and not closed, as the status board
    unacknowledged: dict[str, int]  # by severity: open and never acknowledged
    oldest_unacknowledged_s: dict[str, float]  # by severity: the longest wait since detection
    open_breaches: dict[str, int]  # by kind: breaches still judged against now
    summaries: dict[str, dict[str, Summary]]  # metric -> severity -> summary


_BOARD: Final = """
SELECT severity, count(*), count(*) FILTER (WHERE acknowledged_at IS NULL),
    max(CASE WHEN acknowledged_at IS NULL
             THEN greatest($now - epoch_us(coalesce(detected_at, opened_at)), 0) END)
FROM status_board
GROUP BY severity
"""


def incident_gauges(
    cur: duckdb.DuckDBPyConnection, policy: Policy, now: datetime
) -> IncidentGauges:
    """Every severity and breach kind is present (0 when nothing), so alerts on a series
    never see it vanish."""
    zero = {s.value: 0 for s in Severity}
    opened, unacked = dict(zero), dict(zero)
    oldest: dict[str, float] = {s.value: 0.0 for s in Severity}
    cur.execute(_BOARD, {"now": to_us(now)})
    for severity, count, waiting, longest_us in cur.fetchall():
        opened[severity], unacked[severity] = int(count), int(waiting)
        oldest[severity] = float(longest_us or 0) / 1e6
    kinds = breaches.open_counts(cur, policy, now)
    summaries: dict[str, dict[str, Summary]] = {metric: {} for metric in SUMMARIZED}
    for row in mttx(cur, (GroupBy.SEVERITY,), now - WINDOW, None, policy.teams):
        for metric in SUMMARIZED:
            stat = row[metric]
            total = (stat["mean_s"] or 0.0) * stat["count"]
            summaries[metric][row["group"]] = Summary(
                stat["count"], total, stat["p50_s"], stat["p90_s"]
            )
    return IncidentGauges(
        open=opened,
        unacknowledged=unacked,
        oldest_unacknowledged_s=oldest,
        open_breaches=kinds,
        summaries=summaries,
    )
