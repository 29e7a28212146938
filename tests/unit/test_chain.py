"""events.chain: sealing links events per incident; verify finds any tampering of stored bytes;
an auditor can recompute every hash with the standard library alone."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import events_for

from events.chain import GENESIS, ChainBreak, digest, seal, verify
from events.schema import (
    AlertFired,
    IncidentNoteAdded,
    MitigationAction,
    MitigationStarted,
    Source,
    decode,
    encode,
)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEALED_AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
INCIDENTS = ["INC-7K2M9Q", "INC-AAAAAA", "x"]


@st.composite
def interleaved_log(draw: st.DrawFn, min_size: int = 1) -> list[tuple[int, bytes]]:
    """Sealed chains of up to three incidents, interleaved in a random log order."""
    count = draw(st.integers(1, len(INCIDENTS)))
    chains = [seal(draw(events_for(i, min_size)), GENESIS, SEALED_AT) for i in INCIDENTS[:count]]
    order = draw(st.permutations([n for n, chain in enumerate(chains) for _ in chain]))
    cursors = [iter(chain) for chain in chains]
    return [(seq, encode(next(cursors[n]))) for seq, n in enumerate(order, start=1)]


def _stdlib_hash(raw: bytes) -> tuple[str, str]:
    """(stored hash, recomputed hash) using only json + hashlib, as an offline auditor would:
    empty the hash value in the stored bytes and hash what remains."""
    stored = json.loads(raw)["hash"]
    body = raw.replace(f'"hash":"{stored}"'.encode(), b'"hash":""')
    return stored, hashlib.sha256(body).hexdigest()


def _note(n: int, incident_id: str = "INC-7K2M9Q") -> IncidentNoteAdded:
    return IncidentNoteAdded(
        event_id=f"n-{n}",
        incident_id=incident_id,
        occurred_at=SEALED_AT - timedelta(minutes=n),
        actor="scribe@example.com",
        source=Source.WEB,
        text=f"note {n}",
    )


# --- seal ---------------------------------------------------------------------------------------


@PROPERTY
@given(events=events_for("INC-7K2M9Q"))
def test_seal_links_events(events: list[Any]) -> None:
    sealed = seal(events, GENESIS, SEALED_AT)
    assert len(sealed) == len(events)
    assert sealed[0].prev_hash == "" == GENESIS
    for previous, current in itertools.pairwise(sealed):
        assert current.prev_hash == previous.hash
    for original, event in zip(events, sealed, strict=True):
        assert len(event.hash) == 64 and int(event.hash, 16) >= 0
        assert event.recorded_at == SEALED_AT and event.recorded_at.tzinfo is UTC
        assert event.event_id == original.event_id and type(event) is type(original)
        assert event.hash == digest(encode(msgspec.structs.replace(event, hash="")))
        assert decode(encode(event)) == event
    assert len({e.hash for e in sealed}) == len(sealed)
    assert seal(events, GENESIS, SEALED_AT) == sealed  # deterministic


def test_seal_does_not_touch_its_input() -> None:
    events = [_note(1), _note(2)]
    before = [msgspec.structs.replace(e) for e in events]
    sealed = seal(events, GENESIS, SEALED_AT)
    assert events == before
    assert all(e.hash == "" and e.recorded_at is None for e in events)
    assert all(e.hash != "" for e in sealed)


def test_seal_continues_an_existing_chain() -> None:
    first = seal([_note(1), _note(2)], GENESIS, SEALED_AT)
    rest = seal([_note(3)], first[-1].hash, SEALED_AT + timedelta(seconds=5))
    assert rest[0].prev_hash == first[-1].hash
    assert seal([_note(1), _note(2), _note(3)], GENESIS, SEALED_AT)[-1].hash != rest[0].hash
    records = [(n, encode(e)) for n, e in enumerate([*first, *rest], start=1)]
    assert verify(records) == []


def test_seal_normalises_times_to_utc() -> None:
    offset = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    [sealed] = seal([msgspec.structs.replace(_note(1), occurred_at=offset)], GENESIS, offset)
    assert sealed.occurred_at.tzinfo is UTC and sealed.recorded_at.tzinfo is UTC  # type: ignore[union-attr]
    assert json.loads(encode(sealed))["occurred_at"] == "2024-05-01T12:00:00Z"


def test_hash_covers_prev_hash_and_every_field() -> None:
    [base] = seal([_note(1)], GENESIS, SEALED_AT)
    [other_prev] = seal([_note(1)], "0" * 64, SEALED_AT)
    [other_time] = seal([_note(1)], GENESIS, SEALED_AT + timedelta(microseconds=1))
    [other_text] = seal([msgspec.structs.replace(_note(1), text="note 1 ")], GENESIS, SEALED_AT)
    assert len({base.hash, other_prev.hash, other_time.hash, other_text.hash}) == 4


# --- verify -------------------------------------------------------------------------------------


@PROPERTY
@given(log=interleaved_log())
def test_verify_accepts_good_interleaved_chains(log: list[tuple[int, bytes]]) -> None:
    assert verify(log) == []
    assert verify([]) == []


@PROPERTY
@given(log=interleaved_log(), data=st.data())
def test_any_single_byte_flip_is_detected(
    log: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(log) - 1), label="record")
    seq, raw = log[index]
    position = data.draw(st.integers(0, len(raw) - 1), label="byte")
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]), label="value")
    tampered = raw[:position] + bytes([new_byte]) + raw[position + 1 :]
    assert tampered != raw

    records = [*log[:index], (seq, tampered), *log[index + 1 :]]
    breaks = verify(records)
    assert breaks, "tampering went unnoticed"
    assert any(b.seq == seq for b in breaks), breaks
    assert all(b.seq >= seq for b in breaks)
    assert all(isinstance(b, ChainBreak) and b.reason for b in breaks)


@pytest.mark.parametrize(
    ("before", "after"),
    [(b'"confidence":1.0', b'"confidence":1e0'), (b"\\u000b", b"\\u000B")],
)
def test_semantically_invisible_flip_is_detected(before: bytes, after: bytes) -> None:
    started = MitigationStarted(
        event_id="m-1",
        incident_id="INC-7K2M9Q",
        occurred_at=SEALED_AT,
        actor="auto-remediation",
        source=Source.SYSTEM,
        mitigation_id="m1",
        action=MitigationAction.SCALE,
        target="pool\x0bblue",
        confidence=1.0,
    )
    [sealed] = seal([started], GENESIS, SEALED_AT)
    raw = encode(sealed)
    tampered = raw.replace(before, after)
    assert len(tampered) == len(raw)
    assert sum(a != b for a, b in zip(raw, tampered, strict=True)) == 1
    assert verify([(1, tampered)]) != []


@pytest.mark.parametrize("junk", [b"\x80", b"\xc3", b"\xff\xfe"])
def test_invalid_utf8_in_a_string_is_a_break(junk: bytes) -> None:
    [good, second] = [encode(e) for e in seal([_note(1), _note(2)], GENESIS, SEALED_AT)]
    corrupted = second.replace(b"note 2", b"note" + junk)
    breaks = verify([(1, good), (2, corrupted)])
    assert [b.seq for b in breaks] == [2]


@PROPERTY
@given(events=events_for("INC-7K2M9Q", min_size=2), data=st.data())
def test_reordering_is_detected(events: list[Any], data: st.DataObject) -> None:
    sealed = [encode(e) for e in seal(events, GENESIS, SEALED_AT)]
    i = data.draw(st.integers(0, len(sealed) - 2))
    j = data.draw(st.integers(i + 1, len(sealed) - 1))
    sealed[i], sealed[j] = sealed[j], sealed[i]
    breaks = verify(list(enumerate(sealed, start=1)))
    assert [(b.incident_id, b.seq) for b in breaks] == [("INC-7K2M9Q", i + 1)]
    assert breaks[0].reason == "prev_hash does not link to the previous event"


def test_deleting_an_event_is_detected() -> None:
    sealed = [encode(e) for e in seal([_note(1), _note(2), _note(3)], GENESIS, SEALED_AT)]
    breaks = verify([(1, sealed[0]), (3, sealed[2])])
    assert [(b.incident_id, b.seq, b.event_id) for b in breaks] == [("INC-7K2M9Q", 3, "n-3")]


def test_rehashing_one_event_breaks_the_next_link() -> None:
    sealed = seal([_note(1), _note(2), _note(3)], GENESIS, SEALED_AT)
    forged = seal(
        [msgspec.structs.replace(sealed[1], text="nothing happened")], sealed[0].hash, SEALED_AT
    )
    records = [(1, encode(sealed[0])), (2, encode(forged[0])), (3, encode(sealed[2]))]
    breaks = verify(records)
    assert [(b.seq, b.reason) for b in breaks] == [
        (3, "prev_hash does not link to the previous event")
    ]


def test_one_break_per_incident_and_others_unaffected() -> None:
    a = [encode(e) for e in seal([_note(1), _note(2), _note(3)], GENESIS, SEALED_AT)]
    b = [encode(e) for e in seal([_note(1, "INC-B"), _note(2, "INC-B")], GENESIS, SEALED_AT)]
    bad = a[1].replace(b"note 2", b"note X")
    records = [(1, a[0]), (2, b[0]), (3, bad), (4, b[1]), (5, a[2])]
    breaks = verify(records)
    assert breaks == [ChainBreak("INC-7K2M9Q", 3, "n-2", "hash does not match the stored bytes")]
    assert verify([(2, b[0]), (4, b[1])]) == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'{"event_id": "e"}', b"\xff"])
def test_undecodable_records_are_reported(raw: bytes) -> None:
    [good] = [encode(e) for e in seal([_note(1)], GENESIS, SEALED_AT)]
    breaks = verify([(1, good), (2, raw)])
    assert [(b.incident_id, b.seq) for b in breaks] == [("?", 2)]


# --- offline audit ------------------------------------------------------------------------------


@PROPERTY
@given(log=interleaved_log())
def test_stdlib_recomputes_every_hash(log: list[tuple[int, bytes]]) -> None:
    heads: dict[str, str] = {}
    for _, raw in log:
        stored, recomputed = _stdlib_hash(raw)
        assert recomputed == stored
        document = json.loads(raw)
        assert document["prev_hash"] == heads.get(document["incident_id"], "")
        heads[document["incident_id"]] = stored


@pytest.mark.parametrize("confidence", [1e-05, 3e-07])
def test_stdlib_recompute_with_tiny_float(confidence: float) -> None:
    started = MitigationStarted(
        event_id="m-1",
        incident_id="INC-7K2M9Q",
        occurred_at=SEALED_AT,
        actor="auto-remediation",
        source=Source.SYSTEM,
        mitigation_id="m1",
        action=MitigationAction.SCALE,
        confidence=confidence,
    )
    [sealed] = seal([started], GENESIS, SEALED_AT)
    stored, recomputed = _stdlib_hash(encode(sealed))
    assert recomputed == stored


def test_a_second_hash_text_in_the_record_is_a_break() -> None:
    # An alert may carry a label named "hash". Sealed with it empty, the record holds
    # `"hash":""` once in the labels; a forger who sets that label to the record's own hash
    # makes the hash text appear twice. Emptying both would give back the sealed preimage, so
    # the forgery would verify: a record that names its hash more than once is a break.
    fired = AlertFired(
        event_id="a-1",
        incident_id="INC-7K2M9Q",
        occurred_at=SEALED_AT,
        actor="alertmanager",
        source=Source.ALERTMANAGER,
        fingerprint="f1",
        labels={"hash": ""},
    )
    [sealed] = seal([fired], GENESIS, SEALED_AT)
    raw = encode(sealed)
    assert verify([(1, raw)]) == []
    forged = raw.replace(b'"hash":""', b'"hash":"' + sealed.hash.encode() + b'"', 1)
    assert forged.count(sealed.hash.encode()) == 2
    breaks = verify([(1, forged)])
    assert [(b.seq, b.reason) for b in breaks] == [(1, "hash does not match the stored bytes")]
