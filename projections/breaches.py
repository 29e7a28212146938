"""Missed obligations of the policy and repeat incidents, over the read models (DESIGN 8).

The lifecycle facts are the folded incident's, shared with `projections.metrics` (`FACTS`):
every response clock starts at the fold's detection (definitions version 2); the
update cadence and the promised updates walk the comms in the `events` by the same rules
(`effective_at`, retracted events ignored, resolved when the latest resolve/reopen is a
resolve). Targets and escalation paths follow the CURRENT severity.
Unresolved incidents are judged against `now`; a breach is reported once per missed deadline.
"""

from datetime import datetime
from typing import Any, Final

import duckdb

from events.policy import Policy
from events.schema import ActionStatus, Severity
from projections import action_items
from projections.metrics import FACTS, from_us, to_us

# Every kind, with what it means (README "Breaches"; `/metrics` counts open breaches by kind).
MEANINGS: Final[dict[str, str]] = {
    "ack": "not acknowledged within the severity's `ack` target from detection",
    "first_comms": "no comms within the `first_comms` target from detection",
    "update_cadence": (
        "a gap between updates longer than the `update` target while unresolved; the cadence "
        "runs from the first comms (from the declaration for a severity without a "
        "`first_comms` target), so a missing first message is one breach, not two"
    ),
    "next_update_missed": (
        "the `next_update_at` a comms promised passed without a newer comms while unresolved"
    ),
    "escalation": (
        "a level of the severity's escalation path fell due (its `after` from detection, still "
        "unacknowledged or unresolved as its `without` says) with no `incident.escalated` at "
        "that level or higher by then: one breach per level"
    ),
    "resolution": "not resolved within the `resolve` target from detection",
    "postmortem": "no postmortem published within the `postmortem` target from the resolution",
    "postmortem_review_overdue": (
        "no `postmortem.reviewed` within the `review` target from the postmortem's first "
        "publication"
    ),
    "action_item_overdue": "an action item not done by the end of its due day (UTC)",
}
KINDS: Final = tuple(MEANINGS)
# The event types the breach query reads from `events` (an as-of reconstruction writes only
# these, with the corrections and retractions that amend them): keep in step with `_BREACHES`.
EVENT_TYPES: Final = frozenset(
    {
        "incident.declared",
        "incident.resolved",
        "incident.reopened",
        "incident.escalated",
        "comms.sent",
        "postmortem.reviewed",
        "action_item.added",
        "action_item.completed",
    }
)
REASONS: Final = ("service+category", "alertname")

# Each obligation: the clock starts at `start_us`, stops at `stop_us` (the fact, or the end of
# the obligation, or now); a breach when it ran longer than the target. `level` names the
# escalation level, `item_id` the action item; NULL for the other kinds.
_BREACHES: Final = """
WITH facts AS ({facts}),
policy (severity, ack, first_comms, upd, resolve, postmortem, review) AS (VALUES {policy}),
levels AS ({levels}),
reviews AS (
    -- The fold's `postmortem_reviewed_at`: the earliest meeting held, retracted ones ignored.
    SELECT incident_id, min(epoch_us(CAST(body ->> 'held_at' AS TIMESTAMPTZ))) AS reviewed_us
    FROM events WHERE type = 'postmortem.reviewed' AND NOT retracted
      AND (CAST($incident AS VARCHAR) IS NULL OR incident_id = $incident)
    GROUP BY incident_id
),
inc AS (
    SELECT f.*, p.ack, p.first_comms, p.upd, p.resolve, p.postmortem, p.review,
        r.reviewed_us,
        coalesce(f.resolved, false) AS is_resolved,
        NOT coalesce(f.resolved, false) AND f.closed_us IS NULL AS is_open,
        CASE WHEN f.resolved THEN f.last_res_us ELSE coalesce(f.closed_us, $now) END AS end_us
    FROM facts f
    JOIN policy p ON p.severity = f.severity
    LEFT JOIN reviews r USING (incident_id)
    WHERE f.declared_us IS NOT NULL
      AND (CAST($incident AS VARCHAR) IS NULL OR f.incident_id = $incident)
),
points AS (
    -- Comms, resolutions and reopenings in effective time: the update cadence runs between
    -- them (and from the declaration while there are no comms, for a severity whose first
    -- message has no target of its own), a comms' promise until the next one.
    SELECT e.incident_id, e.seq, e.type, epoch_us(e.effective_at) AS t_us,
        epoch_us(CAST(e.body ->> 'next_update_at' AS TIMESTAMPTZ)) AS promise_us
    FROM events e JOIN inc USING (incident_id)
    -- Only an open incident's cadence and promises are open breaches (`open_only` skips the
    -- walk of the others: most incidents, on a /metrics scrape).
    WHERE NOT e.retracted AND (NOT $open_only OR inc.is_open)
      AND (e.type IN ('comms.sent', 'incident.resolved', 'incident.reopened')
           OR (e.type = 'incident.declared' AND inc.comms = 0 AND inc.first_comms IS NULL))
),
marked AS (
    SELECT *, lead(t_us) OVER w AS next_us,
        coalesce(last_value(CASE WHEN type IN ('incident.resolved', 'incident.reopened')
                                 THEN type END IGNORE NULLS) OVER w, '') AS phase
    FROM points
    WINDOW w AS (PARTITION BY incident_id ORDER BY t_us, seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
escalated AS (
    -- The fold's rule (`escalation_level`: the highest level named, retractions aside), so the
    -- board, `decide` and these breaches agree on how far an incident was escalated.
    SELECT e.incident_id, CAST(e.body ->> 'level' AS INTEGER) AS level,
        epoch_us(e.effective_at) AS t_us
    FROM events e JOIN inc USING (incident_id)
    WHERE e.type = 'incident.escalated'
),
ladder AS (
    -- Each level waits for its escalation (at that level or higher) until what it is about
    -- happens: the acknowledgement or the resolution.
    SELECT i.incident_id, i.severity, l.level, l.after_s, i.detected_us, i.is_open,
        CASE WHEN l.without = 'ack' THEN coalesce(i.ack_us, i.end_us) ELSE i.end_us END
            AS awaited_us,
        l.without = 'resolution' OR i.ack_us IS NULL AS awaiting,
        min(x.t_us) AS escalated_us
    FROM inc i
    JOIN levels l ON l.severity = i.severity
    LEFT JOIN escalated x ON x.incident_id = i.incident_id AND x.level >= l.level
    WHERE NOT $open_only OR i.is_open
    GROUP BY ALL
),
item_times AS (
    SELECT e.incident_id, e.body ->> 'item_id' AS item_id,
        min(epoch_us(e.effective_at)) FILTER (e.type = 'action_item.added') AS added_us,
        min(epoch_us(e.effective_at)) FILTER (e.type = 'action_item.completed') AS done_us
    FROM events e JOIN inc USING (incident_id)
    WHERE e.type IN ('action_item.added', 'action_item.completed')
    GROUP BY ALL
),
items AS (
    -- The fold's action items (`action_items`), done at their first completion.
    SELECT a.incident_id, a.item_id, a.status = '{done}' AS done, epoch_us(a.due_at) AS due_us,
        least(t.added_us, epoch_us(a.due_at)) AS start_us, t.done_us, {overdue} AS overdue
    FROM action_items a JOIN inc USING (incident_id)
    LEFT JOIN item_times t ON t.incident_id = a.incident_id AND t.item_id = a.item_id
    WHERE a.due_at IS NOT NULL
),
clocks AS (
    -- Acknowledgement, first comms and resolution run from detection (definitions version 2).
    SELECT incident_id, severity, 'ack' AS kind, ack AS target_s, detected_us AS start_us,
        coalesce(ack_us, end_us) AS stop_us, is_open AS open,
        CAST(NULL AS INTEGER) AS level, CAST(NULL AS VARCHAR) AS item_id
    FROM inc WHERE ack IS NOT NULL
    UNION ALL
    SELECT incident_id, severity, 'first_comms', first_comms, detected_us,
        coalesce(first_comms_us, end_us), is_open, NULL, NULL
    FROM inc WHERE first_comms IS NOT NULL
    UNION ALL
    SELECT incident_id, severity, 'resolution', resolve, detected_us, end_us, is_open, NULL, NULL
    FROM inc WHERE resolve IS NOT NULL
    UNION ALL
    -- Still missing: judged against now and still growing, so open although resolved.
    SELECT incident_id, severity, 'postmortem', postmortem, last_res_us,
        coalesce(postmortem_us, $now), postmortem_us IS NULL, NULL, NULL
    FROM inc WHERE postmortem IS NOT NULL AND is_resolved
    UNION ALL
    -- The review meeting, from the first publication (of any status: a draft is on the table).
    SELECT incident_id, severity, 'postmortem_review_overdue', review, postmortem_us,
        coalesce(reviewed_us, $now), reviewed_us IS NULL, NULL, NULL
    FROM inc WHERE review IS NOT NULL AND postmortem_us IS NOT NULL
    UNION ALL
    SELECT m.incident_id, i.severity, 'update_cadence', i.upd, m.t_us,
        coalesce(m.next_us, $now), i.is_open, NULL, NULL
    FROM marked m JOIN inc i USING (incident_id)
    WHERE i.upd IS NOT NULL AND m.phase <> 'incident.resolved'
      AND (m.next_us IS NOT NULL OR i.is_open)
    UNION ALL
    -- A promise made while unresolved, kept by the next comms; a resolution releases it. A
    -- promise dated before its own message is due at once.
    SELECT m.incident_id, i.severity, 'next_update_missed',
        CAST(m.promise_us - least(m.t_us, m.promise_us) AS DOUBLE) / 1e6,
        least(m.t_us, m.promise_us), coalesce(m.next_us, i.end_us),
        m.next_us IS NULL AND i.is_open, NULL, NULL
    FROM marked m JOIN inc i USING (incident_id)
    WHERE m.type = 'comms.sent' AND m.promise_us IS NOT NULL AND m.phase <> 'incident.resolved'
    UNION ALL
    SELECT incident_id, severity, 'escalation', after_s, detected_us,
        least(awaited_us, coalesce(escalated_us, awaited_us)),
        escalated_us IS NULL AND is_open AND awaiting, level, NULL
    FROM ladder
    UNION ALL
    SELECT it.incident_id, i.severity, 'action_item_overdue',
        CAST(it.due_us - it.start_us AS DOUBLE) / 1e6, it.start_us,
        CASE WHEN it.done THEN coalesce(it.done_us, it.start_us) ELSE $now END, NOT it.done,
        NULL, it.item_id
    FROM items it JOIN inc i USING (incident_id)
    -- Open items by `action_items`' own rule (overdue once the due day has ended), done ones
    -- when they were done after it.
    WHERE CASE WHEN it.done THEN it.done_us > it.due_us ELSE it.overdue END
),
judged AS (
    SELECT *, CAST(round(target_s * 1e6) AS BIGINT) AS target_us FROM clocks
)
SELECT incident_id, severity, kind, target_s, CAST(stop_us - start_us AS DOUBLE) / 1e6,
    start_us + target_us, open, level, item_id
FROM judged
WHERE (stop_us - start_us > target_us OR kind = 'action_item_overdue')
  AND (NOT $open_only OR open)
"""
_LISTED: Final = "ORDER BY start_us + target_us, incident_id, kind, level, item_id"

_TARGETS: Final = ("ack_s", "first_comms_s", "update_s", "resolve_s", "postmortem_s", "review_s")


def _policy_values(policy: Policy) -> tuple[str, dict[str, Any]]:
    rows: list[str] = []
    params: dict[str, Any] = {}
    for n, severity in enumerate(Severity):
        targets = policy.for_severity(severity)
        params[f"sev{n}"] = severity.value
        names = []
        for field in _TARGETS:
            params[f"{field}{n}"] = getattr(targets, field)
            names.append(f"CAST(${field}{n} AS DOUBLE)")
        rows.append(f"($sev{n}, {', '.join(names)})")
    return ", ".join(rows), params


def _levels(policy: Policy) -> tuple[str, dict[str, Any]]:
    """The escalation paths as rows (severity, level, after_s, without); values as parameters."""
    rows: list[str] = []
    params: dict[str, Any] = {}
    for severity in Severity:
        for level, step in enumerate(policy.escalation.path(severity), start=1):
            key = f"{severity.value}_{level}"
            params |= {f"lsev_{key}": severity.value, f"lafter_{key}": step.after_s}
            params[f"lwithout_{key}"] = step.without.value
            rows.append(f"($lsev_{key}, {level}, CAST($lafter_{key} AS DOUBLE), $lwithout_{key})")
    if not rows:
        empty = "SELECT CAST(NULL AS VARCHAR) AS severity, CAST(NULL AS INTEGER) AS level, "
        empty += "CAST(NULL AS DOUBLE) AS after_s, CAST(NULL AS VARCHAR) AS without WHERE false"
        return empty, params
    values = ", ".join(rows)
    return f"SELECT * FROM (VALUES {values}) v(severity, level, after_s, without)", params


def breaches(
    cur: duckdb.DuckDBPyConnection,
    policy: Policy,
    now: datetime,
    incident_id: str | None = None,
    open_only: bool = False,
) -> list[dict[str, Any]]:
    """Every missed obligation, earliest deadline first; `due_at` is the deadline missed.

    `open`: the breach is judged against `now` (the incident is unresolved, or, for
    `postmortem`, the postmortem is still missing, for an action item it is not done...);
    other breaches are settled facts. `level` and `to` name the escalation level missed and
    whom the policy escalates to there, `item_id` the overdue action item; None for others.
    """
    sql, params = _query(policy, now, incident_id, open_only)
    cur.execute(f"{sql} {_LISTED}", params)
    found = []
    for row in cur.fetchall():
        incident_id_, severity, kind, target_s, actual_s, due_us, is_open, level, item_id = row
        step = policy.escalation.level(severity, level) if level is not None else None
        found.append(
            {
                "incident_id": incident_id_,
                "severity": severity,
                "kind": kind,
                "target_s": float(target_s),
                "actual_s": float(actual_s),
                "due_at": from_us(due_us),
                "breached_at": from_us(due_us),
                "open": bool(is_open),
                "level": level,
                "to": step.to if step is not None else None,
                "item_id": item_id,
            }
        )
    return found


def open_counts(cur: duckdb.DuckDBPyConnection, policy: Policy, now: datetime) -> dict[str, int]:
    """How many open breaches (`breaches(..., open_only=True)`) of each kind, counted in the
    query: every kind present, 0 when none."""
    sql, params = _query(policy, now, None, True)
    cur.execute(f"SELECT kind, count(*) FROM ({sql}) GROUP BY kind", params)
    return dict.fromkeys(KINDS, 0) | {str(kind): int(n) for kind, n in cur.fetchall()}


def _query(
    policy: Policy, now: datetime, incident_id: str | None, open_only: bool
) -> tuple[str, dict[str, Any]]:
    values, params = _policy_values(policy)
    levels, level_params = _levels(policy)
    params |= level_params | {"now": to_us(now), "now_at": from_us(to_us(now) or 0)}
    params |= {"incident": incident_id, "open_only": open_only}
    overdue = action_items.overdue_sql("$now_at", "a")
    sql = _BREACHES.format(
        facts=FACTS, policy=values, levels=levels, overdue=overdue, done=ActionStatus.DONE.value
    )
    return sql, params


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
),
previous AS (
    -- The most recent earlier incident with the same key (ties: declaration time, then incident
    -- id, order incidents): its predecessor in that order. A window, not a self-join, which
    -- pairs every two incidents of a busy service (quadratic).
    SELECT incident_id, t_us, reason,
        lag(incident_id) OVER w AS previous_id, lag(t_us) OVER w AS previous_us
    FROM keys
    WINDOW w AS (PARTITION BY reason, key ORDER BY t_us, incident_id)
)
SELECT incident_id, previous_id, reason, CAST(t_us - previous_us AS DOUBLE) / 1e6, t_us
FROM previous
WHERE previous_id IS NOT NULL AND t_us - previous_us <= $window_us
QUALIFY row_number() OVER (PARTITION BY incident_id, reason
                           ORDER BY previous_us DESC, previous_id DESC) = 1
ORDER BY t_us, incident_id, reason
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
