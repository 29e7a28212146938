"""events.chain: what `verify` reports about records it cannot read, pinned where mutation
testing (`uv run mutmut run`, issue 16) found it unpinned.

An auditor runs `verify` over a whole log: a record that is not a JSON event is one break
under the sentinel incident "?" (the evidence report prints its event id and reason), and it
must not stop the check of everything after it.
"""

from datetime import UTC, datetime

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
