"""Read queries over the read models: status board, one incident, timeline, audit.

The status board, timeline and audit read the views `schema` defines for SQL users, so the API
and CLI show exactly what `incidents query` sees in them.

Functions take a DuckDB cursor (one per reader: DESIGN 12, a second `execute` on a shared
connection cuts the first result off) and return plain rows for the API and CLI.
"""

from datetime import datetime, timedelta
from typing import Any, Final

import duckdb
import msgspec

from events.policy import DEFAULT_POLICY, Policy
from projections import breaches
from projections.metrics import from_us

_INCIDENT_COLUMNS: Final = """
    incident_id, title, severity, category, services, status, phase, opened_at, detected_at,
    acknowledged_at, mitigated_at, resolved_at, closed_at, commander, roles, escalation_level,
    open_mitigations, alerts_firing, comms_count, last_comms_at, next_update_at,
    postmortem_published_at, reopen_count, action_items_open, first_seq, last_seq,
    declared_at, first_comms_at, impact_started_at, alerts_truncated, alert_opened, taken_over,
    impact_services, impact_regions, impact_customers, customers_affected, users_affected_pct,
    data_loss, security, revenue_at_risk, impact_text
"""
# The timeline's times (all NOT NULL in `events`).
_TIMELINE_TIMES: Final = ("occurred_at", "effective_at", "recorded_at")
# The impact statement's columns, as the keys of the row's `impact` object (None without one).
_IMPACT: Final = {
    "impact_services": "services",
    "impact_regions": "regions",
    "impact_customers": "customers",
    "customers_affected": "customers_affected",
    "users_affected_pct": "users_affected_pct",
    "data_loss": "data_loss",
    "security": "security",
    "revenue_at_risk": "revenue_at_risk",
    "impact_text": "text",
}


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def next_escalation(row: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """The open incident's next escalation due (`EscalationPolicy.next_level`): the level, whom
    to bring in, when (from detection) and what it waits for; None when resolved, closed or at
    the end of its path. A `due_at` in the past is overdue: the `escalation` breach says so."""
    if row["resolved_at"] is not None or row["closed_at"] is not None or not row["severity"]:
        return None
    paths = policy.escalation
    acknowledged = row["acknowledged_at"] is not None
    level = paths.next_level(row["severity"], row["escalation_level"], acknowledged)
    step = paths.level(row["severity"], level) if level is not None else None
    if step is None or row["detected_at"] is None:
        return None
    due_at = row["detected_at"] + timedelta(seconds=step.after_s)
    return {"level": level, "to": step.to, "due_at": due_at, "without": step.without.value}


def _incident(row: dict[str, Any], now: datetime, policy: Policy) -> dict[str, Any]:
    row["roles"] = msgspec.json.decode(row["roles"])
    impact = {key: row.pop(column) for column, key in _IMPACT.items()}
    # Lists are never NULL in a statement: all NULL means the incident has none.
    row["impact"] = impact if impact["services"] is not None else None
    row["acknowledged"] = row["acknowledged_at"] is not None
    end = row["resolved_at"] or now
    row["age_s"] = (end - row["opened_at"]).total_seconds()
    row["next_escalation"] = next_escalation(row, policy)
    return row


def list_incidents(
    cur: duckdb.DuckDBPyConnection,
    now: datetime,
    status: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    include_closed: bool = False,
    limit: int = 500,
    policy: Policy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """The status board: open incidents (unless `include_closed`), most severe first, each
    with its `next_escalation` on `policy`'s path."""
    source = "status_board" if not include_closed and status is None else "incidents"
    where = ["TRUE"]
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if severity is not None:
        where.append("severity = ?")
        params.append(severity)
    if service is not None:
        where.append("list_contains(services, ?)")
        params.append(service)
    cur.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM {source} WHERE {' AND '.join(where)} "
        "ORDER BY severity, opened_at DESC LIMIT ?",
        [*params, limit],
    )
    return [_incident(row, now, policy) for row in _rows(cur)]


def get_incident(
    cur: duckdb.DuckDBPyConnection,
    incident_id: str,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> dict[str, Any] | None:
    cur.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE incident_id = ?", [incident_id])
    rows = _rows(cur)
    if not rows:
        return None
    incident = _incident(rows[0], now, policy)
    cur.execute(
        "SELECT fingerprint, alertname, severity, firing, starts_at, ends_at FROM alerts "
        "WHERE incident_id = ? ORDER BY first_seq",
        [incident_id],
    )
    incident["alerts"] = _rows(cur)
    return incident


def incident_with_breaches(
    cur: duckdb.DuckDBPyConnection, incident_id: str, now: datetime, policy: Policy
) -> dict[str, Any] | None:
    """The incident's row as of `now` (`get_incident`), with the policy targets it missed."""
    incident = get_incident(cur, incident_id, now, policy)
    if incident is not None:
        incident["breaches"] = breaches.breaches(cur, policy, now, incident_id=incident_id)
    return incident


def timeline(cur: duckdb.DuckDBPyConnection, incident_id: str) -> list[dict[str, Any]]:
    # The times come as epoch microseconds: DuckDB's zoned datetime per TIMESTAMPTZ value took
    # more than half of a long timeline's read (1,000 events: 6 of 10 ms); same instants, in UTC.
    times = ", ".join(f"epoch_us({column}) AS {column}" for column in _TIMELINE_TIMES)
    cur.execute(
        f"SELECT * EXCLUDE (incident_id) REPLACE ({times}) FROM timeline "
        "WHERE incident_id = ? ORDER BY seq",
        [incident_id],
    )
    rows = _rows(cur)
    for row in rows:
        for column in _TIMELINE_TIMES:
            row[column] = from_us(row[column])
        row["body"] = msgspec.json.decode(row["body"])
    return rows


def audit(
    cur: duckdb.DuckDBPyConnection,
    actor: str | None = None,
    type_: str | None = None,
    incident_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    principal: str | None = None,
) -> list[dict[str, Any]]:
    """Who did what: every event, newest first, filtered by actor (as claimed) or principal
    (as authenticated), type, incident and time."""
    filters = {
        "actor = ?": actor,
        "principal = ?": principal,
        "type = ?": type_,
        "incident_id = ?": incident_id,
        "recorded_at >= ?": since,
        "recorded_at <= ?": until,
    }
    used = {clause: value for clause, value in filters.items() if value is not None}
    where = " AND ".join(["TRUE", *used])
    # The view's columns, occurred_at moved second: the order the API and CLI have always shown.
    cur.execute(
        "SELECT recorded_at, occurred_at, * EXCLUDE (recorded_at, occurred_at) "
        f"FROM audit WHERE {where} ORDER BY seq DESC LIMIT ?",
        [*used.values(), limit],
    )
    return _rows(cur)
