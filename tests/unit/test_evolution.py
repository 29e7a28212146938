"""Events evolve, never edited: schema versions, upcasters, newer records read leniently."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.chain import digest, seal, verify
from events.incident import fold
from events.schema import (
    EVENT_TYPES,
    IncidentEscalated,
    IncidentNoteAdded,
    SchemaError,
    Source,
    decode,
    decode_many,
    encode,
)
from events.upcasting import UPCASTERS, Document

GOLDEN = (Path(__file__).parents[1] / "golden" / "events" / "events.jsonl").read_bytes()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _escalation(**fields: Any) -> bytes:
    """A synthetic stored `incident.escalated` record with `fields` over a valid one."""
    doc = {
        "type": "incident.escalated",
        "event_id": "esc-1",
        "incident_id": "INC-EVOLVE1",
        "occurred_at": "2026-11-01T12:00:00Z",
        "actor": "alice@example.com",
        "source": "cli",
        "level": 2,
        "to": "payments-oncall",
        "reason": "",
    }
    return json.dumps({**doc, **fields}).encode()


def _renamed_target(doc: Document) -> Document:
    """What v2 of `incident.escalated` would have needed, had it renamed `to` to `target`:
    here the reverse, so the current class reads the result."""
    return {k: v for k, v in doc.items() if k != "target"} | {"to": doc["target"]}


@pytest.fixture
def escalated_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    """`incident.escalated` at version 2, with its upcaster from version 1."""
    monkeypatch.setattr(IncidentEscalated, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(UPCASTERS, ("incident.escalated", 1), _renamed_target)


def test_every_type_has_a_schema_version() -> None:
    assert all(cls.SCHEMA_VERSION >= 1 for cls in EVENT_TYPES)


def test_sealed_events_carry_their_types_schema_version() -> None:
    note = IncidentNoteAdded(
        event_id="n1", incident_id="INC-V1", occurred_at=T0, actor="a", source=Source.CLI, text="x"
    )
    [sealed] = seal([note], "", T0)
    assert sealed.schema_version == IncidentNoteAdded.SCHEMA_VERSION
    assert b'"schema_version":1' in encode(sealed)


def test_a_record_from_before_versions_is_version_1() -> None:
    assert {decode(raw).schema_version for raw in GOLDEN.splitlines()} == {1}


@pytest.mark.usefixtures("escalated_v2")
def test_an_old_record_that_no_longer_fits_is_upcast_before_decoding() -> None:
    old = _escalation(target="db-oncall")
    old = old.replace(b'"to": "payments-oncall", ', b"")
    event = decode(old)
    assert isinstance(event, IncidentEscalated)
    assert (event.to, event.schema_version) == ("db-oncall", 2)


@pytest.mark.usefixtures("escalated_v2")
def test_an_old_record_that_still_fits_is_upcast_too() -> None:
    event = decode(_escalation(target="db-oncall"))  # valid as is, but read as version 2
    assert isinstance(event, IncidentEscalated)
    assert event.to == "db-oncall"
    assert decode_many(b"[" + _escalation(target="x") + b"]")[0].to == "x"  # type: ignore[union-attr]


@pytest.mark.usefixtures("escalated_v2")
def test_a_current_record_is_not_upcast() -> None:
    event = decode(_escalation(schema_version=2))
    assert isinstance(event, IncidentEscalated)
    assert event.to == "payments-oncall"


def test_an_old_record_without_an_upcaster_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IncidentEscalated, "SCHEMA_VERSION", 2)
    with pytest.raises(SchemaError, match=r"no upcaster .*\$\.schema_version"):
        decode(_escalation())


def _resealed(raw: bytes, **fields: Any) -> bytes:
    """`raw` as a newer writer would store it, `fields` added, hash recomputed over the bytes."""
    doc = json.loads(raw) | fields | {"hash": ""}
    body = msgspec.json.encode(doc, order="sorted")
    return body.replace(b'"hash":""', b'"hash":"' + digest(body).encode() + b'"')


def test_a_newer_records_unknown_fields_are_kept_and_ignored_by_the_fold() -> None:
    records = GOLDEN.splitlines()
    first = [r for r in records if b"INC-GOLDEN0002" in r]
    newer = [_resealed(first[0], schema_version=7, blast_radius={"regions": ["eu-west-1"]})]
    for raw in first[1:]:  # relink the chain over the new bytes
        prev = json.loads(newer[-1])["hash"]
        newer.append(_resealed(raw, prev_hash=prev))
    assert b'"blast_radius":{"regions":["eu-west-1"]}' in newer[0]
    assert verify(enumerate(newer, start=1)) == []
    decoded = [decode(raw) for raw in newer]
    assert decoded[0].schema_version == 7
    assert fold(decoded) == fold(decode(raw) for raw in first)


@pytest.mark.usefixtures("escalated_v2")
def test_an_old_record_its_upcaster_cannot_read_is_a_schema_error() -> None:
    """Refused like any record that does not decode (the projector quarantines it)."""
    with pytest.raises(SchemaError, match=r"upcasting incident\.escalated version 1: KeyError"):
        decode(_escalation())  # no `target`: the upcaster's KeyError
