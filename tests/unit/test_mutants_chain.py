"""events.chain: what `verify` reports about records it cannot read, pinned where mutation
testing (`uv run mutmut run`, issue 16) found it unpinned.

An auditor runs `verify` over a whole log: a record that is not a JSON event is one break
under the sentinel incident "?" (the evidence report prints its event id and reason), and it
must not stop the check of everything after it.
"""

from datetime import UTC, datetime

import msgspec

from events.chain import GENESIS, ChainBreak, seal, verify
from events.schema import IncidentNoteAdded, Source, encode

SEALED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
UNREADABLE = ChainBreak("?", 2, "", "not a JSON event")


def _sealed(incident_id: str, count: int) -> list[bytes]:
    notes = [
        IncidentNoteAdded(
            event_id=f"{incident_id}-{n}",
            incident_id=incident_id,
            occurred_at=SEALED_AT,
            actor="a",
            source=Source.CLI,
            text=f"note {n}",
        )
        for n in range(1, count + 1)
    ]
    return [encode(e) for e in seal(notes, GENESIS, SEALED_AT)]


def test_an_unreadable_record_is_one_exact_break() -> None:
    [good] = _sealed("INC-A", 1)
    assert verify([(1, good), (2, b"not json"), (3, b"\xff")]) == [UNREADABLE]


def test_records_after_an_unreadable_one_are_still_verified() -> None:
    a = _sealed("INC-A", 3)
    tampered = a[2].replace(b"note 3", b"note X")
    breaks = verify([(1, a[0]), (2, b"not json"), (3, a[1]), (4, tampered)])
    assert breaks == [
        UNREADABLE,
        ChainBreak("INC-A", 4, "INC-A-3", "hash does not match the stored bytes"),
    ]


def test_records_after_a_broken_incidents_next_one_are_still_verified() -> None:
    """Once an incident is broken its later records are skipped, not the rest of the log: a
    tampered record of another incident after them is reported too."""
    a = _sealed("INC-A", 3)
    b = _sealed("INC-B", 2)
    records = [(1, a[0]), (2, a[1].replace(b"note 2", b"note X")), (3, a[2]), (4, b[0])]
    breaks = verify([*records, (5, b[1].replace(b"note 2", b"note X"))])
    assert breaks == [
        ChainBreak("INC-A", 2, "INC-A-2", "hash does not match the stored bytes"),
        ChainBreak("INC-B", 5, "INC-B-2", "hash does not match the stored bytes"),
    ]


def test_seal_stamps_the_types_schema_version_whatever_the_event_carried() -> None:
    """The version in the stored bytes is the shape of its type this service writes (readers
    upcast by it), not what the event in hand happened to carry."""
    note = IncidentNoteAdded(
        event_id="INC-A-1",
        incident_id="INC-A",
        occurred_at=SEALED_AT,
        actor="a",
        source=Source.CLI,
        text="note 1",
        schema_version=IncidentNoteAdded.SCHEMA_VERSION + 1,
    )
    [sealed] = seal([note], GENESIS, SEALED_AT)
    assert sealed.schema_version == IncidentNoteAdded.SCHEMA_VERSION
    assert msgspec.json.decode(encode(sealed))["schema_version"] == IncidentNoteAdded.SCHEMA_VERSION
