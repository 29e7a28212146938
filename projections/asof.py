"""As-of reconstruction: an incident, or the status board, as it stood at an instant, from the log.

The events recorded at or before the instant are folded in memory with the domain's `fold`,
as the projector folds them. What the answers read from SQL (the incident's row and alerts, its
breaches and action items, the board) runs over the rows of that fold, written with the
projector's own row functions (`projections.rows`) into a scratch in-memory DuckDB inside a
transaction that is rolled back afterwards: so an incident "as of T" is exactly what the live
projection showed once it had those events, breaches included. Only the events those queries
read go into the scratch database; the timeline is built from the events themselves.
"""

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import duckdb
import msgspec

from events.incident import fold
from events.policy import DEFAULT_POLICY, Policy
from events.records import Stored
from events.schema import EventCorrected, EventRetracted, type_name
from projections import action_items, breaches, queries, rows
from projections.database import open_database
from projections.projector import Projector

# Idle scratch databases kept for the next reconstruction (one is busy per reconstruction).
KEPT_IDLE: Final = 2
# Their own bound, above the live file's: nothing in memory can spill, and a board as of T holds
# every incident of the log (~100 MiB per 250k events); the rollback frees it all again.
SCRATCH_MEMORY_LIMIT: Final = 2**30
_AMENDING: Final = frozenset({"event.corrected", "event.retracted"})


class IncidentThen(msgspec.Struct, frozen=True, kw_only=True):
    """One incident as of an instant: its row with `breaches`, its timeline, its action items."""

    incident: dict[str, Any]
    events: list[dict[str, Any]]
    action_items: list[dict[str, Any]]


def recorded_by(events: Iterable[Stored], as_of: datetime) -> list[Stored]:
    """The events the log had recorded at `as_of` (log order kept)."""
    return [s for s in events if (s.event.recorded_at or s.event.occurred_at) <= as_of]


def incident(
    events: Iterable[Stored], as_of: datetime, incident_id: str, policy: Policy
) -> IncidentThen | None:
    """`incident_id` as of `as_of`, from its events (None when it was not declared by then)."""
    known = [s for s in recorded_by(events, as_of) if s.event.incident_id == incident_id]
    amends = any(isinstance(s.event, EventCorrected | EventRetracted) for s in known)
    with _SCRATCH.transaction() as cur:
        states = _write(cur, known)
        found = queries.incident_with_breaches(cur, incident_id, as_of, policy)
        if found is None:
            return None
        # Each query costs a DuckDB round of its own: those whose answer the fold already
        # knows (no amendments: every event keeps its time; no action items) are not asked.
        amended: dict[int, tuple[datetime, bool]] = {}
        if amends:
            cur.execute(
                "SELECT seq, effective_at, retracted FROM events WHERE incident_id = ?",
                [incident_id],
            )
            amended = {int(seq): (at, bool(gone)) for seq, at, gone in cur.fetchall()}
        has_items = bool(states[incident_id][0].action_items)
        items = action_items.of_incident(cur, incident_id, as_of) if has_items else []
    return IncidentThen(incident=found, events=_timeline(known, amended), action_items=items)


def board(
    events: Iterable[Stored],
    as_of: datetime,
    status: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    include_closed: bool = False,
    policy: Policy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """The status board (`queries.list_incidents`) as of `as_of`."""
    with _SCRATCH.transaction() as cur:
        _write(cur, recorded_by(events, as_of), board_only=True)
        return queries.list_incidents(
            cur, as_of, status, severity, service, include_closed, policy=policy
        )


def _write(
    cur: duckdb.DuckDBPyConnection, known: Sequence[Stored], board_only: bool = False
) -> rows.States:
    """The projector's rows of `known` (one batch), with only the events the queries read;
    `board_only`: the rows of `incidents` alone, all the status board reads. Returns the
    folded states written."""
    by_incident: dict[str, list[Stored]] = {}
    for stored in known:
        by_incident.setdefault(stored.event.incident_id, []).append(stored)
    states: rows.States = {
        incident_id: (fold(s.event for s in group), group[0].seq, group[-1].seq)
        for incident_id, group in by_incident.items()
    }
    if board_only:
        _save(cur, states, with_items=False)
        return states
    targets = {
        s.event.target_event_id
        for s in known
        if isinstance(s.event, EventCorrected | EventRetracted)
    }
    read = breaches.EVENT_TYPES | _AMENDING
    wanted = [s for s in known if type_name(s.event) in read or s.event.event_id in targets]
    if wanted:
        rows.append(cur, "events", [rows.event_row(s) for s in wanted])
        rows.corrections(cur, wanted)
    rows.alerts(cur, known)
    _save(cur, states, with_items=True)
    return states


def _save(cur: duckdb.DuckDBPyConnection, states: rows.States, with_items: bool) -> None:
    """`rows.save`'s rows of the declared incidents, inserted: the scratch tables start empty,
    and an upsert costs more than the rest of a small reconstruction."""
    declared = [folded for folded in states.values() if folded[0].declared]
    if declared:
        rows.append(cur, "incidents", [rows.incident_row(*folded) for folded in declared])
    items = [row for st, _, _ in declared for row in action_items.rows(st)] if with_items else []
    if items:
        rows.append(cur, "action_items", items)


def _timeline(
    known: Sequence[Stored], amended: dict[int, tuple[datetime, bool]]
) -> list[dict[str, Any]]:
    """`queries.timeline`'s rows (the `timeline` view's columns, body decoded), from the events;
    `amended`: effective time and retraction of the events the scratch database holds."""
    found = []
    for stored in known:
        e = stored.event
        effective_at, retracted = amended.get(stored.seq, (e.occurred_at, False))
        found.append(
            {
                "seq": stored.seq,
                "event_id": e.event_id,
                "type": type_name(e),
                "occurred_at": e.occurred_at,
                "effective_at": effective_at,
                "recorded_at": e.recorded_at or e.occurred_at,
                "actor": e.actor,
                "principal": e.principal.name if e.principal else None,
                "principal_role": e.principal.role if e.principal else None,
                "source": e.source.value,
                "trace_id": e.trace_id,
                "span_id": e.span_id,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
                "retracted": retracted,
                "body": msgspec.json.decode(stored.raw),
            }
        )
    return found


class _Scratch:
    """In-memory databases holding the read-model tables, one per reconstruction at a time:
    opening one and creating its tables costs more than the rest of a reconstruction."""

    def __init__(self, keep: int) -> None:
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._keep = keep

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside a transaction rolled back at the end: nothing written stays."""
        with self._lock:
            con = self._idle.pop() if self._idle else None
        if con is None:
            con = open_database(":memory:", SCRATCH_MEMORY_LIMIT)
            Projector(con, None)  # the tables, as the projector creates them
        cur = con.cursor()
        clean = False
        try:
            cur.execute("BEGIN TRANSACTION")
            yield cur
        finally:
            try:
                cur.execute("ROLLBACK")
                clean = True
            finally:
                cur.close()
                with self._lock:
                    if clean and len(self._idle) < self._keep:
                        self._idle.append(con)
                        con = None
                if con is not None:
                    con.close()


_SCRATCH: Final = _Scratch(KEPT_IDLE)
