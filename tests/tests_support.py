"""Command builders shared by tests (kept out of conftest so tests can import them)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from events.commands import AddNote, Declare
from events.schema import Severity, Source

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
