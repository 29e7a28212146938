"""Missed severity-policy targets and repeat incidents, over the read models (DESIGN 8).

The lifecycle facts are the folded incident's, shared with `projections.metrics` (`FACTS`):
every response clock starts at the fold's detection (definitions version 2); the
update cadence walks the comms in the `events` by the same rules (`effective_at`, retracted
events ignored, resolved when the latest resolve/reopen is a resolve). Targets follow the
CURRENT severity.
Unresolved incidents are judged against `now`; a breach is reported once per missed deadline.
"""

from datetime import datetime
from typing import Any, Final

import duckdb

from events.policy import Policy
from events.schema import Severity
from projections.metrics import FACTS, from_us, to_us

KINDS: Final = ("ack", "first_comms", "update_cadence", "resolution", "postmortem")
REASONS: Final = ("service+category", "alertname")

# Each obligation: the clock starts at `start_us`, stops at `stop_us` (the fact, or the end of
# the obligation, or now); a breach when it ran longer than the target.
_BREACHES: Final = """
WITH facts AS ({facts}),
policy (severity, ack, first_comms, upd, resolve, postmortem) AS (VALUES {policy}),
inc AS (
    SELECT f.*, i.severity, p.ack, p.first_comms, p.upd, p.resolve, p.postmortem,
        coalesce(f.resolved, false) AS is_resolved,
        NOT coalesce(f.resolved, false) AND f.closed_us IS NULL AS is_open,
        CASE WHEN f.resolved THEN f.last_res_us ELSE coalesce(f.closed_us, $now) END AS end_us
    FROM facts f
    JOIN incidents i USING (incident_id)
    JOIN policy p ON p.severity = i.severity
    WHERE f.declared_us IS NOT NULL
      AND (CAST($incident AS VARCHAR) IS NULL OR f.incident_id = $incident)
),
points AS (
    -- The update cadence runs from the first comms, or from the declaration when the incident
    -- has no comms at all, and from each reopening; a resolution stops it.
    SELECT e.incident_id, e.seq, e.type, epoch_us(e.effective_at) AS t_us
    FROM events e JOIN inc USING (incident_id)
    WHERE NOT e.retracted AND inc.upd IS NOT NULL
      AND (e.type IN ('comms.sent', 'incident.resolved', 'incident.reopened')
           OR (e.type = 'incident.declared' AND inc.comms = 0))
),
marked AS (
    SELECT *, lead(t_us) OVER w AS next_us,
        coalesce(last_value(CASE WHEN type IN ('incident.resolved', 'incident.reopened')
                                 THEN type END IGNORE NULLS) OVER w, '') AS phase
    FROM points
    WINDOW w AS (PARTITION BY incident_id ORDER BY t_us, seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
clocks AS (
    -- Acknowledgement, first comms and resolution run from detection (definitions version 2).
    SELECT incident_id, severity, 'ack' AS kind, ack AS target_s, detected_us AS start_us,
        coalesce(ack_us, end_us) AS stop_us, is_open AS open
    FROM inc WHERE ack IS NOT NULL
    UNION ALL
    SELECT incident_id, severity, 'first_comms', first_comms, detected_us,
        coalesce(first_comms_us, end_us), is_open
    FROM inc WHERE first_comms IS NOT NULL
    UNION ALL
    SELECT incident_id, severity, 'resolution', resolve, detected_us, end_us, is_open
    FROM inc WHERE resolve IS NOT NULL
    UNION ALL
    -- Still missing: judged against now and still growing, so open although resolved.
    SELECT incident_id, severity, 'postmortem', postmortem, last_res_us,
        coalesce(postmortem_us, $now), postmortem_us IS NULL
    FROM inc WHERE postmortem IS NOT NULL AND is_resolved
    UNION ALL
    SELECT m.incident_id, i.severity, 'update_cadence', i.upd, m.t_us,
        coalesce(m.next_us, $now), i.is_open
    FROM marked m JOIN inc i USING (incident_id)
    WHERE m.phase <> 'incident.resolved' AND (m.next_us IS NOT NULL OR i.is_open)
),
judged AS (
    SELECT *, CAST(round(target_s * 1e6) AS BIGINT) AS target_us FROM clocks
)
SELECT incident_id, severity, kind, target_s, CAST(stop_us - start_us AS DOUBLE) / 1e6,
    start_us + target_us, open
FROM judged
WHERE stop_us - start_us > target_us AND (NOT $open_only OR open)
ORDER BY start_us + target_us, incident_id, kind
"""


def _policy_values(policy: Policy) -> tuple[str, dict[str, Any]]:
    rows: list[str] = []
    params: dict[str, Any] = {}
    for n, severity in enumerate(Severity):
        targets = policy.for_severity(severity)
        params[f"sev{n}"] = severity.value
        names = []
        for field in ("ack_s", "first_comms_s", "update_s", "resolve_s", "postmortem_s"):
            params[f"{field}{n}"] = getattr(targets, field)
            names.append(f"CAST(${field}{n} AS DOUBLE)")
        rows.append(f"($sev{n}, {', '.join(names)})")
    return ", ".join(rows), params


def breaches(
    cur: duckdb.DuckDBPyConnection,
    policy: Policy,
    now: datetime,
    incident_id: str | None = None,
    open_only: bool = False,
) -> list[dict[str, Any]]:
    """Every missed target, earliest deadline first; `due_at` is the deadline that was missed.

    `open`: the breach is judged against `now` (the incident is unresolved, or, for
    `postmortem`, the postmortem is still missing); other breaches are settled facts.
    """
    values, params = _policy_values(policy)
    params |= {"now": to_us(now), "incident": incident_id, "open_only": open_only}
    cur.execute(_BREACHES.format(facts=FACTS, policy=values), params)
    return [
        {
            "incident_id": incident_id_,
            "severity": severity,
            "kind": kind,
            "target_s": float(target_s),
            "actual_s": float(actual_s),
            "due_at": from_us(due_us),
            "breached_at": from_us(due_us),
            "open": bool(is_open),
        }
        for incident_id_, severity, kind, target_s, actual_s, due_us, is_open in cur.fetchall()
    ]


_REPEATS: Final = """
WITH declared AS (
    SELECT incident_id, epoch_us(declared_at) AS t_us
    FROM incidents WHERE declared_at IS NOT NULL
),
keys AS (
    SELECT DISTINCT d.incident_id, d.t_us, 'service+category' AS reason,
        i.category || chr(31) || s.service AS key
    FROM declared d JOIN incidents i USING (incident_id),
        unnest(i.services) AS s(service)
    UNION
    -- From the events, not the `alerts` table, which keeps retracted alerts.
    SELECT DISTINCT d.incident_id, d.t_us, 'alertname', e.body ->> 'alertname'
    FROM declared d JOIN events e USING (incident_id)
    WHERE e.type = 'alert.fired' AND NOT e.retracted AND e.body ->> 'alertname' <> ''
)
SELECT b.incident_id, a.incident_id, b.reason, CAST(b.t_us - a.t_us AS DOUBLE) / 1e6, b.t_us
FROM keys b JOIN keys a ON a.reason = b.reason AND a.key = b.key
WHERE (a.t_us < b.t_us OR (a.t_us = b.t_us AND a.incident_id < b.incident_id))
  AND b.t_us - a.t_us <= $window_us
QUALIFY row_number() OVER (PARTITION BY b.incident_id, b.reason
                           ORDER BY a.t_us DESC, a.incident_id DESC) = 1
ORDER BY b.t_us, b.incident_id, b.reason
"""


def repeats(cur: duckdb.DuckDBPyConnection, window_days: int = 30) -> list[dict[str, Any]]:
    """Incidents declared within `window_days` after an earlier one with the same cause.

    Same cause: a shared service and the same category, or a shared alertname. One row per
    incident and reason, naming the most recent earlier incident (ties: declaration time, then
    incident id, order incidents).
    """
    cur.execute(_REPEATS, {"window_us": window_days * 86_400_000_000})
    return [
        {
            "incident_id": incident_id,
            "previous_incident_id": previous,
            "reason": reason,
            "gap_s": float(gap_s),
        }
        for incident_id, previous, reason, gap_s, _ in cur.fetchall()
    ]
