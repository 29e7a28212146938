"""MTTD, time to declare, MTTA, MTTM, MTTR and the automation share over the read models
(DESIGN 8), published.

The facts are the folded incident's (`incidents`: the domain's `evolve` applies corrections and
retractions and folds detection, so the board, `decide` and these figures agree), detection
included, and the automation share's (`auto_started`, `auto_succeeded`, `auto_first`): one
concept, one place. Every figure is computed in DuckDB from typed columns: one query per call,
grouped by one key or two at once (`projections.groups`).
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import duckdb

from projections.groups import GroupBy, parse_group_by

# Version 2 (issue 12): every response clock starts at detection, as the runbooks measure.
# Version 3 (issue 13): groups by team and by two keys at once; the automation share.
DEFINITIONS_VERSION: Final = "3"

DEFINITIONS: Final[dict[str, str]] = {
    "declared_at": (
        "occurred_at of the incident's incident.declared event, as corrected by event.corrected. "
        "An incident whose declaration was retracted is not counted. from/to select incidents "
        "by declared_at, from inclusive, to exclusive."
    ),
    "detected_at": (
        "The earliest of: the first starts_at of the incident's alert.fired events that are not "
        "retracted (an alert without starts_at: its occurred_at), the declaration's detected_at "
        "(as corrected by event.corrected's corrected_detected_at), and declared_at. Runbook "
        "001: alert at 14:23:00, declared 14:23:30, so detected 14:23:00."
    ),
    "impact_started_at": (
        "The declaration's impact_started_at (as corrected by event.corrected's "
        "corrected_impact_started_at): when users were first affected; optional."
    ),
    "mttd": (
        "Time to detect: impact_started_at to detected_at; only incidents whose impact start "
        "is known have an MTTD."
    ),
    "time_to_declare": "Time to declare: detected_at to declared_at.",
    "mtta": "Time to acknowledge: detected_at to the first incident.acknowledged.",
    "mttm": (
        "Time to mitigate: detected_at to the first mitigation.completed with outcome "
        "succeeded; failed or rolled-back mitigations do not count."
    ),
    "mttr": (
        "Time to resolve: detected_at to the last incident.resolved, for incidents resolved "
        "now; a reopened incident that is not resolved again has no MTTR. Runbook 001: "
        "detected 14:23:00, resolved 14:52:00, MTTR 29 min; runbook 003: alert 14:35, "
        "resolved 15:22, 47 min."
    ),
    "breaches": (
        "Every response clock starts at detected_at: acknowledgement, first comms and "
        "resolution (the update cadence runs between updates, the postmortem clock from the "
        "resolution). The postmortem's duration is detected_at to resolution."
    ),
    "clamping": (
        "A fact dated before the start of its clock (a backfilled or corrected time, an impact "
        "start after detection) counts as 0 s, never as a negative time."
    ),
    "ordering": (
        "'First' and 'last' order events by effective time, then log order; whether an "
        "incident is resolved now is decided by the latest of its incident.resolved and "
        "incident.reopened events in that order."
    ),
    "amendments": (
        "An event's effective time is the corrected_occurred_at of its latest event.corrected "
        "that is not itself retracted, else its occurred_at; a retracted event counts for "
        "nothing. The status board, the breaches and the postmortem use the same times."
    ),
    "statistics": (
        "Per group: count of incidents; per metric the count of incidents that have it, mean, "
        "p50 and p90 (linear interpolation between closest ranks, as DuckDB quantile_cont) and "
        "max, in seconds; null when the count is 0."
    ),
    "groups": (
        "severity: the current severity; category: the declared category; month: the UTC "
        "month (YYYY-MM) of declared_at; service: each of the incident's services, so an "
        "incident with two services counts in both; one without services in '(none)'; "
        "region: each region of the incident's impact statement (the latest not retracted: "
        "the declaration's impact or incident.impact_updated), so an incident in two regions "
        "counts in both; one without regions or without an impact statement in '(none)'; "
        "team: the team of each of the incident's services by the policy's [teams] table, "
        "each team once per incident (two services of one team count once), a service "
        "without a team and an incident without services in '(none)'. Two keys at once "
        "(group_by=severity,month): one row per pair of values that occurs; each row's "
        "'groups' names both values and 'group' joins them with ' / '."
    ),
    "automation": (
        "Per group: 'started': incidents with a mitigation.started whose automated is true "
        "(not retracted); 'succeeded': of those, incidents where such a mitigation's outcome "
        "is succeeded (a mitigation's outcome is its latest mitigation.completed in log order "
        "that is not retracted); 'mitigated': incidents with a first successful mitigation "
        "(those MTTM counts); 'first_automated': of those, incidents whose first successful "
        "mitigation (the mitigation.completed with outcome succeeded that MTTM ends at: "
        "earliest effective time, then log order) was started with automated true; 'share': "
        "first_automated / mitigated, null when mitigated is 0. Runbook 001's "
        "incident_auto_remediation_rate."
    ),
}

METRICS: Final = ("mttd", "time_to_declare", "mtta", "mttm", "mttr")
AUTOMATION: Final = ("started", "succeeded", "mitigated", "first_automated")
NO_SERVICE: Final = "(none)"
NO_REGION: Final = NO_SERVICE
NO_TEAM: Final = NO_SERVICE
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# Trusted fragments only: the group key is chosen from this table, never formatted from input.
# `_each` skips `list_distinct` (costly per row) for the lists of one value most incidents have.
def _each(values: str, none: str) -> str:
    return (
        f"unnest(CASE WHEN len({values}) = 0 THEN ['{none}'] WHEN len({values}) = 1 "
        f"THEN {values} ELSE list_distinct({values}) END)"
    )


_GROUP_KEYS: Final[dict[GroupBy, str]] = {
    GroupBy.SEVERITY: "severity",
    GroupBy.SERVICE: _each("services", NO_SERVICE),
    GroupBy.CATEGORY: "category",
    GroupBy.MONTH: "strftime(make_timestamp(declared_us), '%Y-%m')",
    GroupBy.REGION: _each("coalesce(impact_regions, [])", NO_REGION),
    # `team_of`: the policy's service -> team map, a one-row CTE of the query (`_TEAMS`).
    GroupBy.TEAM: _each(
        f"list_transform(services, lambda svc: coalesce(team_of[svc], '{NO_TEAM}'))", NO_TEAM
    ),
}
if _unkeyed := [g.value for g in GroupBy if g not in _GROUP_KEYS]:
    raise RuntimeError(f"metrics: no SQL group key for {', '.join(_unkeyed)}")
GROUPS: Final = tuple(g.value for g in GroupBy)

# One row of facts per incident (metrics and breaches share it), as the fold left them, with
# what they group by: one scan of `incidents`, no join back to it. Microseconds since the epoch
# keep every difference exact. `declared_us` is NULL when the declaration was retracted;
# `resolved_at` is the last resolution while resolved. `detected_us` is the fold's detection
# (`Incident.detected_at`: the earliest of the first alert, the declaration's corrected
# detected_at and the declaration); NULL when no declaration counts.
FACTS: Final = """
SELECT
    i.incident_id, i.severity, i.category, i.services, i.impact_regions,
    coalesce(i.auto_started, false) AS auto_started,
    coalesce(i.auto_succeeded, false) AS auto_succeeded,
    coalesce(i.auto_first, false) AS auto_first,
    epoch_us(i.declared_at) AS declared_us,
    CASE WHEN i.declared_at IS NOT NULL THEN epoch_us(i.detected_at) END AS detected_us,
    epoch_us(i.impact_started_at) AS impact_us,
    epoch_us(i.acknowledged_at) AS ack_us,
    epoch_us(i.mitigated_at) AS mitigated_us,
    epoch_us(i.first_comms_at) AS first_comms_us,
    i.comms_count AS comms,
    epoch_us(i.postmortem_published_at) AS postmortem_us,
    i.resolved_at IS NOT NULL AS resolved,
    epoch_us(i.resolved_at) AS last_res_us,
    epoch_us(i.closed_at) AS closed_us
FROM incidents i
"""


def _stat(name: str) -> str:
    # Both quantiles from one aggregate: one sort of the group's values, not two.
    return f"count({name}), avg({name}), quantile_cont({name}, [0.5, 0.9]), max({name})"


def to_us(value: datetime | None) -> int | None:
    """Microseconds since the epoch (a naive value is taken as UTC), the unit of the queries."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = aware - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _clamped(to_us: str, from_us: str) -> str:
    # CASE, not greatest(): greatest(0, NULL) is 0 in DuckDB, and a missing fact must stay NULL.
    return (
        f"CASE WHEN {to_us} < {from_us} THEN 0.0 ELSE CAST({to_us} - {from_us} AS DOUBLE) / 1e6 END"
    )


_TEAMS: Final = "team_map AS (SELECT MAP(CAST($team_services AS VARCHAR[]), " + (
    "CAST($team_names AS VARCHAR[])) AS team_of)"
)


def mttx(
    cur: duckdb.DuckDBPyConnection,
    group_by: str | Sequence[GroupBy],
    since: datetime | None = None,
    until: datetime | None = None,
    teams: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per group: incident count, count/mean/p50/p90/max seconds of each metric, and the
    automation counts and share.

    `group_by`: one key or two (`"severity,month"`, ValueError otherwise); `teams`: the
    policy's service -> team map, for `team`.
    """
    keys = parse_group_by(group_by if isinstance(group_by, str) else ",".join(group_by))
    grouped = "durations"
    steps = []
    for n, key in enumerate(keys):
        # One key per step: two unnests in one SELECT would pair lists up, not cross them.
        steps.append(
            f"g{n} AS (SELECT {_GROUP_KEYS[key]} AS grp{n}, g.* FROM {grouped} g, team_map)"
        )
        grouped = f"g{n}"
    columns = ", ".join(f"grp{n}" for n in range(len(keys)))
    sql = f"""
    WITH facts AS ({FACTS}),
    selected AS (
        SELECT * FROM facts
        WHERE declared_us IS NOT NULL
          AND (CAST($since AS BIGINT) IS NULL OR declared_us >= $since)
          AND (CAST($until AS BIGINT) IS NULL OR declared_us < $until)
    ),
    {_TEAMS},
    durations AS (
        SELECT f.declared_us, f.severity, f.category, f.services, f.impact_regions,
            {_clamped("f.detected_us", "f.impact_us")} AS mttd,
            {_clamped("f.declared_us", "f.detected_us")} AS time_to_declare,
            {_clamped("f.ack_us", "f.detected_us")} AS mtta,
            {_clamped("f.mitigated_us", "f.detected_us")} AS mttm,
            CASE WHEN f.resolved THEN {_clamped("f.last_res_us", "f.detected_us")} END AS mttr,
            f.auto_started, f.auto_succeeded,
            f.mitigated_us IS NOT NULL AS mitigated,
            f.mitigated_us IS NOT NULL AND f.auto_first AS auto_first
        FROM selected f
    ),
    {", ".join(steps)}
    SELECT {columns}, count(*), {", ".join(_stat(m) for m in METRICS)},
        count_if(auto_started), count_if(auto_succeeded), count_if(mitigated),
        count_if(auto_first)
    FROM {grouped} GROUP BY {columns} ORDER BY {columns}
    """
    team_map = dict(teams or {})
    params = {
        "since": to_us(since),
        "until": to_us(until),
        "team_services": list(team_map),
        "team_names": list(team_map.values()),
    }
    cur.execute(sql, params)
    rows: list[dict[str, Any]] = []
    width = len(keys)
    for row in cur.fetchall():
        values = [str(value) for value in row[:width]]
        out: dict[str, Any] = {
            "group": " / ".join(values),
            "groups": {key.value: value for key, value in zip(keys, values, strict=True)},
            "count": int(row[width]),
        }
        for index, metric in enumerate(METRICS):
            count, mean, quantiles, top = row[width + 1 + 4 * index : width + 5 + 4 * index]
            p50, p90 = quantiles or (None, None)
            out[metric] = {
                "count": int(count),
                "mean_s": _float(mean),
                "p50_s": _float(p50),
                "p90_s": _float(p90),
                "max_s": _float(top),
            }
        counts = [int(n) for n in row[width + 1 + 4 * len(METRICS) :]]
        automation: dict[str, Any] = dict(zip(AUTOMATION, counts, strict=True))
        mitigated, first = automation["mitigated"], automation["first_automated"]
        automation["share"] = first / mitigated if mitigated else None
        out["automation"] = automation
        rows.append(out)
    return rows


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
