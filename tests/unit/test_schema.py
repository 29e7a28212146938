"""events.schema: round trips, UTC normalisation, strict errors, stdlib-reproducible encoding.

Events are generated from their own msgspec type information (`msgspec.inspect`), so every
field of every type is covered and stays within its Meta limits. `hypothesis.from_type` is not
used: it ignores `Annotated[..., Meta(...)]` and would produce mostly invalid events.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import event_of

from events.schema import (
    EVENT_TYPES,
    TYPE_NAMES,
    CommsSent,
    Event,
    IncidentDeclared,
    IncidentNoteAdded,
    MitigationAction,
    MitigationStarted,
    SchemaError,
    Severity,
    Source,
    decode,
    decode_many,
    encode,
    normalized,
    type_name,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# DESIGN.md section 6, verbatim: the contract names.
CONTRACT_NAMES = {
    "alert.fired",
    "alert.resolved",
    "incident.declared",
    "incident.impact_updated",
    "postmortem.reviewed",
    "action_item.started",
    "notification.sent",
    "incident.acknowledged",
    "incident.severity_changed",
    "incident.status_changed",
    "incident.phase_changed",
    "incident.role_assigned",
    "incident.role_released",
    "incident.escalated",
    "mitigation.started",
    "mitigation.completed",
    "comms.sent",
    "incident.note_added",
    "evidence.attached",
    "incident.resolved",
    "incident.reopened",
    "incident.closed",
    "postmortem.published",
    "action_item.added",
    "action_item.completed",
    "event.corrected",
    "event.retracted",
}


ANY_EVENT = st.sampled_from(EVENT_TYPES).flatmap(event_of)
ANY_EVENT_WITH_OFFSETS = st.sampled_from(EVENT_TYPES).flatmap(
    lambda cls: event_of(cls, offsets=True)
)

NOW = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _valid_document(cls: type[Event] = IncidentNoteAdded, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "incident_id": "INC-7K2M9Q",
        "occurred_at": NOW,
        "actor": "alice@example.com",
        "source": Source.CLI,
    }
    required = {
        IncidentNoteAdded: {"text": "db failover started"},
        IncidentDeclared: {"title": "checkout 500s", "severity": Severity.P1},
        CommsSent: {"audience": "internal", "kind": "initial", "message": "we are on it"},
    }
    document: dict[str, Any] = msgspec.to_builtins(cls(**(base | required.get(cls, {}) | fields)))
    return document


def _stdlib_canonical(data: bytes) -> bytes:
    return json.dumps(
        json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


# --- the contract names ---------------------------------------------------------------------


def test_type_names_are_exactly_the_contract_names() -> None:
    assert TYPE_NAMES == CONTRACT_NAMES
    assert len(EVENT_TYPES) == len(CONTRACT_NAMES) == 27


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=type_name)
def test_every_type_is_a_frozen_tagged_event(cls: type[Event]) -> None:
    assert issubclass(cls, Event)
    assert cls.__struct_config__.frozen
    assert cls.__struct_config__.tag_field == "type"
    assert type_name(cls) in CONTRACT_NAMES


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=type_name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_per_type(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(event_of(cls, stdlib_floats=False))
    raw = encode(event)
    back = decode(raw)
    assert type(back) is cls
    assert back == event
    assert json.loads(raw)["type"] == type_name(cls)


@PROPERTY
@given(events=st.lists(ANY_EVENT, max_size=5))
def test_decode_many_round_trips_a_batch(events: list[Any]) -> None:
    raw = b"[" + b",".join(encode(e) for e in events) + b"]"
    assert decode_many(raw) == events


@PROPERTY
@given(event=ANY_EVENT)
def test_encode_is_what_the_stdlib_reproduces(event: Any) -> None:
    """Stored JSON is sorted and compact: what json.dumps(sort_keys=True) shows an auditor."""
    raw = encode(event)
    assert raw == _stdlib_canonical(raw)


@pytest.mark.parametrize(
    "text", ["\x00\x01\x08\x0b\x1f\x7f", 'quote " back \\ slash /', "é ü 漢字 \u2028\u2029 😀"]
)
@pytest.mark.parametrize("confidence", [0.0, -0.0, 0.5, 1.0, 1 / 3, 1e-10, 1e-4, 5e-324])
def test_encode_matches_stdlib_for_tricky_text_and_floats(text: str, confidence: float) -> None:
    event = MitigationStarted(
        event_id="m-1",
        incident_id="INC-7K2M9Q",
        occurred_at=NOW,
        actor=text,
        source=Source.CLI,
        mitigation_id="m",
        action=MitigationAction.ROLLBACK,
        target=text,
        confidence=confidence,
    )
    raw = encode(event)
    assert raw == _stdlib_canonical(raw)
    assert decode(raw) == event


# --- normalisation --------------------------------------------------------------------------


@PROPERTY
@given(event=ANY_EVENT_WITH_OFFSETS)
def test_normalized_puts_every_datetime_in_utc(event: Any) -> None:
    result = normalized(event)
    assert type(result) is type(event)
    for name in event.__struct_fields__:
        before, after = getattr(event, name), getattr(result, name)
        assert after == before  # same instant, same value
        if isinstance(before, datetime):
            assert after.tzinfo is UTC
            assert after.utcoffset() == timedelta(0)
            assert after.microsecond == before.microsecond
        else:
            assert after is before
    assert normalized(result) is result  # idempotent
    assert decode(encode(result)) == result
    stored = json.loads(encode(result))
    for field in mi.type_info(type(result)).fields:  # type: ignore[attr-defined]
        if isinstance(getattr(result, field.name), datetime):
            assert stored[field.encode_name].endswith("Z")


def test_normalized_converts_a_decoded_offset() -> None:
    doc = _valid_document()
    doc["occurred_at"] = "2024-05-01T14:30:15.123456+02:00"
    event = decode(json.dumps(doc))
    assert event.occurred_at.utcoffset() == timedelta(hours=2)
    result = normalized(event)
    assert result.occurred_at == NOW
    assert result.occurred_at.tzinfo is UTC
    assert json.loads(encode(result))["occurred_at"] == "2024-05-01T12:30:15.123456Z"


def test_normalized_returns_utc_events_unchanged() -> None:
    event = decode(json.dumps(_valid_document(), default=str))
    assert normalized(event) is event


# --- strict validation: the error names the field -------------------------------------------


def _schema_error(doc: dict[str, Any]) -> str:
    with pytest.raises(SchemaError) as info:
        decode(json.dumps(doc, default=str).encode())
    return str(info.value)


def test_valid_document_decodes() -> None:
    doc = _valid_document()
    event = decode(json.dumps(doc, default=str))
    assert isinstance(event, IncidentNoteAdded)
    assert event.text == "db failover started"


@pytest.mark.parametrize("tag", ["incident.exploded", "", "Incident.Declared", "alert_fired"])
def test_unknown_type_names_the_type_field(tag: str) -> None:
    doc = _valid_document() | {"type": tag}
    assert "$.type" in _schema_error(doc)


def test_missing_type_names_the_type_field() -> None:
    doc = _valid_document()
    del doc["type"]
    assert "type" in _schema_error(doc)


@pytest.mark.parametrize("severity", ["P9", "p1", "P-1", "", "critical", 1])
def test_wrong_severity_names_the_field(severity: object) -> None:
    doc = _valid_document(IncidentDeclared) | {"severity": severity}
    assert "$.severity" in _schema_error(doc)


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (IncidentNoteAdded, "kind", "gossip"),
        (IncidentNoteAdded, "source", "carrier-pigeon"),
        (IncidentDeclared, "category", "weather"),
        (CommsSent, "audience", "everyone"),
        (CommsSent, "status", "panicking"),
    ],
)
def test_wrong_enum_names_the_field(cls: type[Event], field: str, value: str) -> None:
    doc = _valid_document(cls) | {field: value}
    assert f"$.{field}" in _schema_error(doc)


@pytest.mark.parametrize("field", ["occurred_at", "recorded_at"])
@pytest.mark.parametrize("stamp", ["2024-05-01T12:30:15", "2024-05-01T12:30:15.123456"])
def test_naive_datetime_names_the_field(field: str, stamp: str) -> None:
    doc = _valid_document() | {field: stamp}
    message = _schema_error(doc)
    assert f"$.{field}" in message
    assert "timezone" in message


def test_title_limit() -> None:
    ok = _valid_document(IncidentDeclared) | {"title": "t" * 300}
    assert decode(json.dumps(ok, default=str)).title == "t" * 300  # type: ignore[union-attr]
    assert "$.title" in _schema_error(ok | {"title": "t" * 301})
    assert "$.title" in _schema_error(ok | {"title": ""})


def test_note_text_limit() -> None:
    ok = _valid_document() | {"text": "é" * 16 * 1024}
    assert len(decode(json.dumps(ok, default=str)).text) == 16 * 1024  # type: ignore[union-attr]
    assert "$.text" in _schema_error(ok | {"text": "x" * (16 * 1024 + 1)})
    assert "$.text" in _schema_error(ok | {"text": ""})


def test_other_size_limits_name_the_field() -> None:
    assert "$.actor" in _schema_error(_valid_document() | {"actor": "a" * 257})
    assert "$.actor" in _schema_error(_valid_document() | {"actor": ""})
    assert "$.event_id" in _schema_error(_valid_document() | {"event_id": "e" * 129})
    assert "$.event_id" in _schema_error(_valid_document() | {"event_id": "has space"})
    assert "$.hash" in _schema_error(_valid_document() | {"hash": "ABC"})
    assert "$.trace_id" in _schema_error(_valid_document() | {"trace_id": "xyz"})


@pytest.mark.parametrize(
    "incident_id",
    ["", "INC 1", "INC.1", "incidents.>", "INC-*", "INC/1", "ÎNC-1", "x" * 65, "INC-1\t"],
)
def test_bad_incident_id_names_the_field(incident_id: str) -> None:
    doc = _valid_document() | {"incident_id": incident_id}
    assert "$.incident_id" in _schema_error(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [("incident_id", "INC-1\n"), ("event_id", "evt-1\n"), ("prev_hash", "\n")],
)
def test_trailing_newline_is_rejected(field: str, value: str) -> None:
    assert f"$.{field}" in _schema_error(_valid_document() | {field: value})


def test_malformed_json_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="malformed JSON"):
        decode(b'{"type": "incident.note_added",')
    with pytest.raises(SchemaError, match="malformed JSON"):
        decode_many(b'[{"type": ')


@pytest.mark.parametrize("many", [False, True], ids=["decode", "decode_many"])
def test_invalid_utf8_is_a_schema_error(many: bool) -> None:
    raw = json.dumps(_valid_document(), default=str).encode().replace(b"failover", b"fail\x80ver")
    with pytest.raises(SchemaError):
        decode_many(b"[" + raw + b"]") if many else decode(raw)


def test_decode_many_names_the_index() -> None:
    good = json.dumps(_valid_document(), default=str)
    bad = json.dumps(_valid_document() | {"type": "nope"}, default=str)
    with pytest.raises(SchemaError, match=r"\$\[1\]\.type"):
        decode_many(f"[{good},{bad}]")
