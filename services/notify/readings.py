"""What the notifier reads from the read models: the incident a notice is about, and the
notices due now. Always on read models that include what is to be told (the notice's event,
or the whole log as of the check), so an acknowledgement already in the log is never told as
missing, and an incident is never shown as it was before the event being told.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Final, TypeAlias, TypeVar

import duckdb

from events.policy import Policy
from events.store import EventStore
from projections import breaches
from projections.queries import get_incident
from projections.tasks import finish
from services.clock import Clock
from services.notify import obligations
from services.notify.obligations import Notice
from services.readmodels import LiveModels

T = TypeVar("T")
log = logging.getLogger("incidents")

WAIT_S: Final = 10.0  # for the read models to include what is to be told, each time
Due: TypeAlias = list[tuple[Notice, dict[str, Any] | None]]


def services_of(incident: dict[str, Any] | None) -> tuple[str, ...]:
    """The declared services and those of the impact statement (what route filters match)."""
    if incident is None:
        return ()
    stated = (incident.get("impact") or {}).get("services") or []
    return (*incident.get("services", ()), *stated)


class Incidents:
    """Incident rows (`get_incident`) by id, read again only once the incident moved on: the
    same obligations are found due at every check, their incidents mostly unchanged (measured,
    500 open incidents with 1,500 notices due: 2-4 s a check reading every row, 70-110 ms so)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, dict[str, Any] | None]] = {}

    def read(
        self, cur: duckdb.DuckDBPyConnection, ids: set[str], now: datetime, policy: Policy
    ) -> dict[str, dict[str, Any] | None]:
        cur.execute(
            "SELECT incident_id, last_seq FROM incidents WHERE incident_id IN (SELECT unnest(?))",
            [sorted(ids)],
        )
        moved = dict(cur.fetchall())
        rows = {}
        for incident_id in ids:
            cached = self._rows.get(incident_id)
            if cached is None or cached[0] != moved.get(incident_id, 0):
                row = get_incident(cur, incident_id, now, policy)
                cached = (moved.get(incident_id, 0), row)
            rows[incident_id] = cached
        self._rows = rows  # only the incidents due now: bounded by what is due
        return {incident_id: row for incident_id, (_, row) in rows.items()}


def due(
    cur: duckdb.DuckDBPyConnection,
    policy: Policy,
    now: datetime,
    before_s: float,
    incidents: Incidents,
) -> Due:
    """The notices due now (open breaches, next-update reminders), each with its incident."""
    found = [obligations.of_breach(b) for b in breaches.breaches(cur, policy, now, open_only=True)]
    cur.execute(
        "SELECT incident_id, severity, detected_at, declared_at, comms_count, last_comms_at, "
        "next_update_at FROM status_board"
    )
    names = [d[0] for d in cur.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    found += obligations.reminders(rows, policy, now, before_s)
    read = incidents.read(cur, {notice.incident_id for notice in found}, now, policy)
    return [(notice, read[notice.incident_id]) for notice in found]


async def _finished(read: Coroutine[Any, Any, T]) -> T:
    # A read in a reader thread runs to its end even when the notifier is stopped meanwhile:
    # the read models' connection must not be closed under it.
    return await finish(asyncio.ensure_future(read))


async def due_now(
    store: EventStore,
    models: LiveModels,
    policy: Policy,
    clock: Clock,
    before_s: float,
    incidents: Incidents,
) -> tuple[datetime, Due]:
    """When it was checked, and what was due then. TimeoutError when the read models do not
    catch up with the log in time (the projector failed, or is far behind)."""
    last_seq = await store.last_seq()
    reader = models.reader  # a replay may swap generations: looked up each time
    await reader.projector.wait(last_seq, timeout=WAIT_S)
    now = clock()
    return now, await _finished(reader.run(due, policy, now, before_s, incidents))


async def incident_of(
    models: LiveModels, notice: Notice, clock: Clock, keepalive: Callable[[], Awaitable[None]]
) -> dict[str, Any] | None:
    """The incident as the read models have it once they include the notice's event; waits
    (keeping the message alive) for as long as they do not."""
    while True:
        reader = models.reader
        try:
            await reader.projector.wait(notice.seq, timeout=WAIT_S)
        except TimeoutError:
            log.warning(
                "notifier: read models not at sequence %s yet (projector at %s); waiting",
                notice.seq,
                reader.projector.checkpoint,
            )
            await keepalive()
            continue
        read = reader.run(get_incident, notice.incident_id, clock(), reader.policy)
        return await _finished(read)
