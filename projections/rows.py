"""Rows of the read-model tables: built from stored events and folded states, written in bulk.

Both the projector's batches and retention's re-folds write through these, inside the caller's
transaction (the one that also moves the checkpoint).
"""

from collections.abc import Iterable
from typing import Any, Final, Literal

import duckdb
import msgspec

from events.incident import Incident
from events.records import Stored
from events.schema import (
    AlertFired,
    AlertResolved,
    AnyEvent,
    EventCorrected,
    EventRetracted,
    Impact,
    Role,
    type_name,
)
from projections import action_items

# Folded states per incident: (state, first sequence, last sequence).
States = dict[str, tuple[Incident, int, int]]

# Sets sorted: the same state encodes to the same bytes in every process (hash seeds differ).
_encode: Final = msgspec.json.Encoder(order="deterministic").encode


def append(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[tuple[Any, ...]],
    action: Literal["insert", "upsert"] = "insert",
) -> None:
    # The appender, not executemany: ~500x faster for bulk rows (DESIGN 12).
    appender = cur.appender(table, action=action)
    appender.append_rows(rows)
    appender.flush()


def event_row(stored: Stored) -> tuple[Any, ...]:
    e = stored.event
    return (
        stored.seq,
        e.event_id,
        e.incident_id,
        type_name(e),
        e.occurred_at,
        e.recorded_at or e.occurred_at,
        e.actor,
        e.source.value,
        e.trace_id,
        e.span_id,
        e.correlation_id,
        e.causation_id,
        e.hash,
        stored.raw.decode(),
        e.occurred_at,
        False,
    )


def incident_row(state: Incident, first_seq: int, last_seq: int) -> tuple[Any, ...]:
    return (
        state.incident_id,
        state.title,
        state.severity.value if state.severity else "",
        state.category.value if state.category else "",
        list(state.services),
        state.board_status,
        state.phase.value if state.phase else "",
        state.opened_at,
        state.detected_at,
        state.acknowledged_at,
        state.mitigated_at,
        state.resolved_at,
        state.closed_at,
        state.holder(Role.COMMANDER),
        _encode({role.value: person for role, person in state.roles}).decode(),
        state.escalation_level,
        sum(1 for m in state.mitigations if m.outcome is None),
        len(state.alerts_firing),
        state.comms_count,
        state.last_comms_at,
        state.next_update_at,
        state.postmortem_published_at,
        state.reopen_count,
        sum(1 for a in state.action_items if not a.done),
        first_seq,
        last_seq,
        _encode(state),
        # Added in schema version 2, so after `state` (an upgraded file appends them there).
        state.declared_at,
        state.first_comms_at,
        # Added in schema version 4.
        state.impact_started_at,
        # Added in schema version 5: the latest impact statement (all NULL without one), what
        # the alerts said of themselves, who holds the incident.
        *_impact_columns(state.impact),
        state.alerts_truncated,
        state.alert_opened,
        state.taken_over,
        # Added in schema version 6: the automation share's facts.
        *state.automation,
    )


def _impact_columns(impact: Impact | None) -> tuple[Any, ...]:
    if impact is None:
        return (None,) * 9
    return (
        list(impact.services),
        list(impact.regions),
        list(impact.customers),
        impact.customers_affected,
        impact.users_affected_pct,
        impact.data_loss,
        impact.security,
        impact.revenue_at_risk,
        impact.text,
    )


def save(cur: duckdb.DuckDBPyConnection, states: States) -> None:
    """Upsert folded states: declared incidents as rows of `incidents`, others as partial.

    An incident is partial when its declaration aged out of the log but later events remain:
    no status-board row and no metrics (they start at the declaration), but its state, so
    the events still to come fold on the same state in every projector.
    """
    rows = [incident_row(st, first, last) for st, first, last in states.values() if st.declared]
    if rows:
        append(cur, "incidents", rows, action="upsert")
    # Each incident's action items replaced whole: the fold's list is the truth (partial
    # incidents have none on show, as they have no row).
    cur.execute(
        "DELETE FROM action_items WHERE incident_id IN (SELECT unnest(?))", [sorted(states)]
    )
    items = [row for st, _, _ in states.values() if st.declared for row in action_items.rows(st)]
    if items:
        append(cur, "action_items", items)
    partial = [
        (incident_id, first, last, _encode(st))
        for incident_id, (st, first, last) in states.items()
        if not st.declared
    ]
    if partial:
        append(cur, "partial_incidents", partial, action="upsert")


# A retracted correction no longer moves its target: the latest remaining one does, else none.
_UNCORRECT: Final = """
UPDATE events t SET effective_at = coalesce((
    SELECT CAST(c.body ->> 'corrected_occurred_at' AS TIMESTAMPTZ) FROM events c
    WHERE c.incident_id = t.incident_id AND c.type = 'event.corrected' AND NOT c.retracted
      AND c.body ->> 'target_event_id' = t.event_id
      AND c.body ->> 'corrected_occurred_at' IS NOT NULL
    ORDER BY c.seq DESC LIMIT 1
), t.occurred_at)
WHERE t.incident_id = $incident AND t.event_id = (
    SELECT body ->> 'target_event_id' FROM events
    WHERE incident_id = $incident AND event_id = $retracted AND type = 'event.corrected'
)
"""


def corrections(cur: duckdb.DuckDBPyConnection, fresh: Iterable[Stored]) -> None:
    """`effective_at` and `retracted` of the events these amend: the fold's rules (the latest
    unretracted correction's time), for the timeline and the update cadence."""
    for stored in fresh:
        event: AnyEvent = stored.event
        if isinstance(event, EventCorrected) and event.corrected_occurred_at is not None:
            cur.execute(
                "UPDATE events SET effective_at = ? WHERE incident_id = ? AND event_id = ?",
                [event.corrected_occurred_at, event.incident_id, event.target_event_id],
            )
        elif isinstance(event, EventRetracted):
            cur.execute(
                "UPDATE events SET retracted = true WHERE incident_id = ? AND event_id = ?",
                [event.incident_id, event.target_event_id],
            )
            cur.execute(
                _UNCORRECT, {"incident": event.incident_id, "retracted": event.target_event_id}
            )


def alerts(cur: duckdb.DuckDBPyConnection, fresh: Iterable[Stored]) -> None:
    """Fold alert events into one row per (incident, fingerprint), upserted in bulk."""
    touched: dict[tuple[str, str], list[Any]] = {}
    for stored in fresh:
        event = stored.event
        if isinstance(event, AlertFired | AlertResolved):
            touched.setdefault((event.incident_id, event.fingerprint), []).append(stored)
    if not touched:
        return
    keys = [f"{i}\x00{f}" for i, f in touched]
    cur.execute(
        "SELECT * FROM alerts WHERE incident_id || chr(0) || fingerprint IN (SELECT unnest(?))",
        [keys],
    )
    rows = {(r[0], r[1]): list(r) for r in cur.fetchall()}
    for key, stored_events in touched.items():
        row = rows.get(key)
        for stored in stored_events:
            event = stored.event
            if isinstance(event, AlertFired):
                start = event.starts_at or event.occurred_at
                if row is None:
                    row = [
                        *key,
                        event.alertname,
                        event.severity,
                        True,
                        start,
                        None,
                        stored.seq,
                        0,
                    ]
                row[4:7] = [True, start, None]
            elif row is not None:  # resolved: only an alert seen firing has a row
                row[4] = False
                row[6] = event.ends_at or event.occurred_at
            if row is not None:
                row[8] = stored.seq
        if row is not None:
            rows[key] = row
    append(cur, "alerts", [tuple(rows[k]) for k in touched if k in rows], action="upsert")
