"""Group commit (`services.write.commits`) against a real nats-server: concurrent writers of
distinct incidents share one atomic batch, each event is stored once and answered with its
sequence, and one writer's conflict, taken id or oversized event fails only that writer."""

import asyncio
from collections.abc import Sequence

import pytest
from tests_support import declare, note

from events.chain import verify
from events.commands import AnyCommand
from events.ids import EventIdTakenError
from events.schema import MAX_EVENT_BYTES, AnyEvent
from events.store import Appended, EventStore, EventTooLargeError
from events.subjects import new_incident_id
from services.write.handler import Accepted, CommandHandler


class _Counting(EventStore):
    """The store, counting the appends that reach it (each one batch or one publish)."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store.nc, store.stream, store.timeout)
        self.appends: list[int] = []

    async def append_all(
        self, decisions: Sequence[tuple[Sequence[AnyEvent], int]]
    ) -> list[Appended]:
        self.appends.append(len(decisions))
        return await super().append_all(decisions)


async def _declared(handler: CommandHandler, count: int) -> list[str]:
    ids = [new_incident_id() for _ in range(count)]
    for incident_id in ids:  # one at a time: each its own append, the handler caches each
        assert isinstance(await handler.handle(declare(incident_id)), Accepted)
    return ids


async def _stored_once(store: EventStore, incident_id: str, results: Sequence[object]) -> list[str]:
    """The incident's event ids, after checking each is stored once, the chain holds, and
    every answered sequence is the stored one."""
    loaded = await store.load(incident_id)
    ids = [s.event.event_id for s in loaded.events]
    assert len(ids) == len(set(ids))
    assert verify((s.seq, s.raw) for s in loaded.events) == []
    stored = {s.event.event_id: s.seq for s in loaded.events}
    for result in results:
        if isinstance(result, Accepted):
            for appended in result.events:
                if appended.event.incident_id == incident_id:
                    assert stored[appended.event.event_id] == appended.seq
    return ids


async def test_concurrent_writers_of_distinct_incidents_share_one_batch(store: EventStore) -> None:
    counting = _Counting(store)
    handler = CommandHandler(counting)
    incidents = await _declared(handler, 17)
    counting.appends.clear()
    commands: list[AnyCommand] = [note(i, f"{i}-n1") for i in incidents]
    results = await asyncio.gather(*(handler.handle(c) for c in commands))
    assert all(isinstance(r, Accepted) and len(r.events) == 1 for r in results)
    # The first writer found nothing out and went alone; the others waited: one batch for all.
    assert counting.appends == [1, 16]
    for incident_id in incidents:
        assert await _stored_once(store, incident_id, results) == [
            f"decl-{incident_id}",
            f"{incident_id}-n1",
        ]


async def test_one_conflict_does_not_fail_the_others(store: EventStore) -> None:
    counting = _Counting(store)
    handler, elsewhere = CommandHandler(counting), CommandHandler(store)
    incidents = await _declared(handler, 9)
    moved = incidents[3]
    # Another writer moves one incident on: `handler`'s cached view of it is stale.
    assert isinstance(await elsewhere.handle(note(moved, "elsewhere")), Accepted)
    counting.appends.clear()
    results = await asyncio.gather(*(handler.handle(note(i, f"{i}-n1")) for i in incidents))
    assert all(isinstance(r, Accepted) and len(r.events) == 1 for r in results)
    # The first went alone; the merged batch of the others failed whole, each of them went
    # alone, the stale one again after reloading.
    assert counting.appends == [1, 8, *[1] * 8, 1]
    for incident_id in incidents:
        expected = [f"decl-{incident_id}", *(["elsewhere"] if incident_id == moved else [])]
        assert await _stored_once(store, incident_id, results) == [*expected, f"{incident_id}-n1"]


async def test_a_taken_id_fails_only_its_writer(store: EventStore) -> None:
    counting = _Counting(store)
    handler = CommandHandler(counting)
    incidents = await _declared(handler, 10)
    holder = incidents[0]
    assert isinstance(await handler.handle(note(holder, "shared-id")), Accepted)
    counting.appends.clear()
    commands = [*(note(i, f"{i}-n1") for i in incidents[2:]), note(incidents[1], "shared-id")]
    results = await asyncio.gather(*(handler.handle(c) for c in commands), return_exceptions=True)
    assert counting.appends == [1, 8, *[1] * 8]  # the first alone, the others merged, then each
    assert isinstance(results[-1], EventIdTakenError) and results[-1].holder == holder
    assert all(isinstance(r, Accepted) and len(r.events) == 1 for r in results[:-1])
    assert await _stored_once(store, incidents[1], results) == [f"decl-{incidents[1]}"]
    for incident_id in incidents[2:]:
        assert await _stored_once(store, incident_id, results) == [
            f"decl-{incident_id}",
            f"{incident_id}-n1",
        ]


async def test_an_oversized_event_fails_only_its_writer(store: EventStore) -> None:
    counting = _Counting(store)
    handler = CommandHandler(counting)
    incidents = await _declared(handler, 9)
    counting.appends.clear()
    huge = note(incidents[0], "huge", text="x" * MAX_EVENT_BYTES)
    commands = [*(note(i, f"{i}-n1") for i in incidents[1:]), huge]
    results = await asyncio.gather(*(handler.handle(c) for c in commands), return_exceptions=True)
    assert counting.appends == [1, 8, *[1] * 8]  # the first alone, the others merged, then each
    assert isinstance(results[-1], EventTooLargeError)
    assert all(isinstance(r, Accepted) for r in results[:-1])
    assert await _stored_once(store, incidents[0], results) == [f"decl-{incidents[0]}"]
    for incident_id in incidents[1:]:
        assert (await _stored_once(store, incident_id, results))[-1] == f"{incident_id}-n1"


async def test_a_retried_group_stores_nothing_twice(store: EventStore) -> None:
    handler = CommandHandler(store)
    incidents = await _declared(handler, 8)
    commands = [note(i, f"{i}-n1") for i in incidents]
    first = await asyncio.gather(*(handler.handle(c) for c in commands))
    # The same writes again, from a writer without a cache (another replica, a restart).
    again = await asyncio.gather(*(CommandHandler(store).handle(c) for c in commands))
    for before, after in zip(first, again, strict=True):
        assert isinstance(before, Accepted) and isinstance(after, Accepted)
        assert [(a.event.event_id, a.seq) for a in after.events] == [
            (a.event.event_id, a.seq) for a in before.events
        ]
        assert all(a.duplicate for a in after.events)
    for incident_id in incidents:
        assert len(await _stored_once(store, incident_id, first)) == 2


@pytest.mark.parametrize("writers", [2, 40])
async def test_many_writers_on_a_few_incidents_each_event_once(
    store: EventStore, writers: int
) -> None:
    handler = CommandHandler(store)
    incidents = await _declared(handler, 3)
    commands = [note(incidents[n % 3], f"w-{n}") for n in range(writers)]
    results = await asyncio.gather(*(handler.handle(c) for c in commands))
    assert all(isinstance(r, Accepted) and len(r.events) == 1 for r in results)
    stored = [e for i in incidents for e in await _stored_once(store, i, results)]
    assert sorted(e for e in stored if e.startswith("w-")) == sorted(c.event_id for c in commands)


async def test_a_writer_cancelled_while_waiting_stores_nothing_and_blocks_no_one(
    store: EventStore,
) -> None:
    handler = CommandHandler(store)
    incidents = await _declared(handler, 10)
    writers = [asyncio.create_task(handler.handle(note(i, f"{i}-n1"))) for i in incidents]
    await asyncio.sleep(0)  # each has run to its append: the first is out, the others wait
    writers[5].cancel()
    results = await asyncio.gather(*writers, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    assert all(
        isinstance(r, Accepted) and len(r.events) == 1 for i, r in enumerate(results) if i != 5
    )
    for n, incident_id in enumerate(incidents):
        stored = await _stored_once(store, incident_id, results)
        assert stored == [f"decl-{incident_id}", *([] if n == 5 else [f"{incident_id}-n1"])]
