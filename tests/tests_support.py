"""Command builders shared by tests (kept out of conftest so tests can import them)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from events.commands import AddNote, Declare
from events.schema import Severity, Source
from events.store import EventStore, Stored
from projections.database import open_database
from projections.projector import Projector

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def declare(incident_id: str, event_id: str = "", commander: str | None = None) -> Declare:
    return Declare(
        incident_id=incident_id,
        event_id=event_id or f"decl-{incident_id}",
        occurred_at=T0,
        actor="alice@example.com",
        source=Source.CLI,
        title="Checkout 5xx",
        severity=Severity.P1,
        commander=commander,
    )


def note(incident_id: str, event_id: str, text: str = "looking") -> AddNote:
    return AddNote(
        incident_id=incident_id,
        event_id=event_id,
        occurred_at=T0 + timedelta(minutes=1),
        actor="bob@example.com",
        source=Source.API,
        text=text,
    )


FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "events": "SELECT * FROM events ORDER BY seq",
        "incidents": "SELECT * FROM incidents ORDER BY incident_id",
        "alerts": "SELECT * FROM alerts ORDER BY incident_id, fingerprint",
        "checkpoint": "SELECT seq FROM checkpoint",
    }
    return {name: con.execute(sql).fetchall() for name, sql in tables.items()}


async def fresh_fold(store: EventStore, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The read models built from scratch, in one pass over the whole log."""
    con = open_database(path)
    projector = Projector(con, store)
    events: list[Stored] = [s async for batch in store.read() for s in batch]
    projector.apply(events, await store.last_seq())
    result = snapshot(con)
    con.close()
    return result


def envelope(incident_id: str, event_id: str, minutes: int) -> dict[str, Any]:
    """Command envelope fields, `minutes` after T0."""
    return {
        "incident_id": incident_id,
        "event_id": event_id,
        "occurred_at": T0 + timedelta(minutes=minutes),
        "actor": "carol@example.com",
        "source": Source.CLI,
    }
