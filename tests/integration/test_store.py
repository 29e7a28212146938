"""The event store against a real nats-server: round trips, idempotency, concurrency, chain."""

import asyncio

import msgspec
import pytest
from nats.aio.client import Client as NATS
from tests_support import T0, declare, note

from events.chain import seal, verify
from events.commands import AnyCommand, Record, Reopen, Resolve
from events.decisions import Rejected
from events.schema import IncidentAcknowledged, IncidentNoteAdded, Source
from events.store import ConcurrencyError, EventStore
from events.stream import StreamSettings, ensure_stream
from events.subjects import new_incident_id
from services.write.handler import Accepted, CommandHandler


async def accepted(handler: CommandHandler | EventStore, command: AnyCommand) -> Accepted:
    if isinstance(handler, EventStore):
        handler = CommandHandler(handler)
    result = await handler.handle(command)
    assert isinstance(result, Accepted), result
    return result


async def test_append_load_read_round_trip(store: EventStore) -> None:
    incident_id = new_incident_id()
    first = await accepted(store, declare(incident_id, commander="carol@example.com"))
    assert [a.event.event_id for a in first.events] == [
        f"decl-{incident_id}",
        f"decl-{incident_id}/1",
    ]
    assert [a.seq for a in first.events] == [1, 2]
    await accepted(store, note(incident_id, "n1"))

    loaded = await store.load(incident_id)
    assert [s.seq for s in loaded.events] == [1, 2, 3]
    assert loaded.last_seq == 3
    assert loaded.events[2].event.text == "looking"  # type: ignore[union-attr]
    assert all(s.event.recorded_at is not None for s in loaded.events)
    assert verify((s.seq, s.raw) for s in loaded.events) == []

    everything = [s async for batch in store.read() for s in batch]
    assert [s.raw for s in everything] == [s.raw for s in loaded.events]
    tail = [s.seq async for batch in store.read(from_seq=2) for s in batch]
    assert tail == [2, 3]


async def test_load_of_unknown_incident_is_empty(store: EventStore) -> None:
    loaded = await store.load("INC-NOPE00")
    assert loaded.events == [] and loaded.last_seq == 0


async def test_read_yields_batches_in_order_across_incidents(store: EventStore) -> None:
    ids = [new_incident_id() for _ in range(30)]
    await asyncio.gather(*(accepted(store, declare(i)) for i in ids))
    for round_ in range(3):
        await asyncio.gather(*(accepted(store, note(i, f"{i}-{round_}")) for i in ids))
    batches = [batch async for batch in store.read(batch_size=16)]
    seqs = [s.seq for batch in batches for s in batch]
    assert seqs == list(range(1, 121))
    assert max(len(b) for b in batches) <= 16


async def test_duplicate_event_id_is_stored_once_with_original_seq(store: EventStore) -> None:
    incident_id = new_incident_id()
    await accepted(store, declare(incident_id))
    first = await accepted(store, note(incident_id, "same-id"))
    again = await accepted(store, note(incident_id, "same-id"))
    assert again.events[0].duplicate and not first.events[0].duplicate
    assert again.events[0].seq == first.events[0].seq
    assert len((await store.load(incident_id)).events) == 2


async def test_server_dedup_answers_retry_with_original_seq(store: EventStore) -> None:
    incident_id = new_incident_id()
    await accepted(store, declare(incident_id))
    loaded = await store.load(incident_id)
    ack = IncidentAcknowledged(
        event_id="ack-1", incident_id=incident_id, occurred_at=T0, actor="a", source=Source.CLI
    )
    sealed = seal([ack], loaded.head_hash, T0)
    [stored] = await store.append(sealed, loaded.last_seq)
    # nats-server checks the expected sequence before dedup: a blind retry is a conflict...
    with pytest.raises(ConcurrencyError):
        await store.append(sealed, loaded.last_seq)
    # ...and after a reload the dedup window answers with the original sequence.
    [again] = await store.append(sealed, stored.seq)
    assert again.duplicate and again.seq == stored.seq
    assert await store.last_seq() == 2


async def test_stale_expected_sequence_is_a_typed_conflict(store: EventStore) -> None:
    incident_id = new_incident_id()
    await accepted(store, declare(incident_id))
    stale = await store.load(incident_id)
    await accepted(store, note(incident_id, "n1"))
    late = IncidentNoteAdded(
        event_id="n2",
        incident_id=incident_id,
        occurred_at=T0,
        actor="a",
        source=Source.CLI,
        text="x",
    )
    with pytest.raises(ConcurrencyError):
        await store.append(seal([late], stale.head_hash, T0), stale.last_seq)
    assert len((await store.load(incident_id)).events) == 2


async def test_concurrent_writers_each_event_once_and_chain_holds(nats_url: str, nc: NATS) -> None:
    import nats

    await ensure_stream(nc, StreamSettings())
    other = await nats.connect(nats_url)
    try:
        writers = [CommandHandler(EventStore(nc)), CommandHandler(EventStore(other))]
        incident_id = new_incident_id()
        await accepted(writers[0], declare(incident_id))
        commands = [note(incident_id, f"n-{i}", text=f"note {i}") for i in range(40)]
        # Each command sent twice, by both writers, interleaved: retries and races at once.
        results = await asyncio.gather(
            *(writers[i % 2].handle(c) for i, c in enumerate(commands + commands))
        )
    finally:
        await other.close()
    assert all(isinstance(r, Accepted) for r in results)
    loaded = await EventStore(nc).load(incident_id)
    ids = [s.event.event_id for s in loaded.events]
    assert sorted(ids[1:]) == sorted(c.event_id for c in commands)
    assert len(ids) == len(set(ids)) == 41
    assert verify((s.seq, s.raw) for s in loaded.events) == []
    seqs_answered = {a.event.event_id: a.seq for r in results for a in r.events}  # type: ignore[union-attr]
    assert seqs_answered == {s.event.event_id: s.seq for s in loaded.events[1:]}


async def test_rejection_appends_nothing(store: EventStore) -> None:
    incident_id = new_incident_id()
    result = await CommandHandler(store).handle(note(incident_id, "n1"))
    assert isinstance(result, Rejected) and result.kind == "not_found"
    assert await store.last_seq() == 0


async def test_record_of_producer_event_follows_the_rules(store: EventStore) -> None:
    incident_id = new_incident_id()
    await accepted(store, declare(incident_id))
    ack = IncidentAcknowledged(
        event_id="ack-x",
        incident_id=incident_id,
        occurred_at=T0,
        actor="pd",
        source=Source.PAGERDUTY,
    )
    handler = CommandHandler(store)
    first = await accepted(handler, Record(ack))
    noop = await handler.handle(Record(msgspec.structs.replace(ack, event_id="ack-y")))
    assert first.events[0].seq == 2
    assert noop == Accepted([])


def _resolve(incident_id: str, event_id: str) -> Resolve:
    return Resolve(
        incident_id=incident_id, event_id=event_id, occurred_at=T0, actor="a", source=Source.CLI
    )


async def test_stale_cache_never_turns_a_change_into_a_no_op(store: EventStore) -> None:
    here, elsewhere = CommandHandler(store), CommandHandler(store)
    incident_id = new_incident_id()
    await accepted(here, declare(incident_id))
    await accepted(here, _resolve(incident_id, "r1"))  # `here` now caches: resolved
    reopen = Reopen(
        incident_id=incident_id, event_id="o1", occurred_at=T0, actor="b", source=Source.CLI
    )
    await accepted(elsewhere, reopen)
    again = await accepted(here, _resolve(incident_id, "r2"))
    assert [a.event.event_id for a in again.events] == ["r2"]
    assert not again.events[0].duplicate


async def test_stale_cache_decision_conflicts_then_decides_again(store: EventStore) -> None:
    here, elsewhere = CommandHandler(store), CommandHandler(store)
    incident_id = new_incident_id()
    await accepted(here, declare(incident_id))  # `here` caches: open
    await accepted(elsewhere, _resolve(incident_id, "r1"))
    result = await accepted(here, _resolve(incident_id, "r2"))
    assert result == Accepted([])  # already resolved: a no-op, not a second event
    loaded = await store.load(incident_id)
    assert [s.event.event_id for s in loaded.events] == [f"decl-{incident_id}", "r1"]
    assert verify((s.seq, s.raw) for s in loaded.events) == []


async def test_a_stale_multi_event_decision_is_a_conflict_and_stores_nothing(
    store: EventStore,
) -> None:
    """A decision of several events goes as one atomic batch: its expected sequence guards it
    as it guards a single event."""
    incident_id = new_incident_id()
    await accepted(store, declare(incident_id))
    stale = await store.load(incident_id)
    await accepted(store, note(incident_id, "n1"))
    late = [
        IncidentNoteAdded(
            event_id=f"late-{n}",
            incident_id=incident_id,
            occurred_at=T0,
            actor="a",
            source=Source.CLI,
            text="x",
        )
        for n in range(2)
    ]
    with pytest.raises(ConcurrencyError):
        await store.append(seal(late, stale.head_hash, T0), stale.last_seq)
    assert [s.event.event_id for s in (await store.load(incident_id)).events][-1] == "n1"


async def test_put_if_last_refuses_a_subject_that_moved(store: EventStore) -> None:
    """A last-value record (a correlation claim) lands only on the sequence it was read at,
    whatever its message id: two writers with different ids cannot both claim."""
    subject = f"correlation.{new_incident_id().lower()}"
    first = await store.put_if_last(subject, b"one", 0, "claim-a")
    with pytest.raises(ConcurrencyError):
        await store.put_if_last(subject, b"two", 0, "claim-b")
    second = await store.put_if_last(subject, b"two", first, "claim-c")
    with pytest.raises(ConcurrencyError):
        await store.put_if_last(subject, b"three", first, "claim-d")
    assert await store.last_on_subject(subject) == (second, b"two")
