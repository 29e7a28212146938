"""The callback reader of the log (`events.follow`): bounded, in order, and nothing lost when it
pauses for a slow caller or when nats-py drops what overflows its own queue."""

import asyncio
import time

from nats.aio.client import Client as NATS

from events.follow import Delivered, Reader
from events.records import Batch
from events.store import EventStore

RECORDS = 600


async def published(nc: NATS, count: int = RECORDS) -> None:
    js = nc.jetstream()
    for base in range(0, count, 100):
        await asyncio.gather(
            *(
                js.publish(f"incidents.INC-F{n % 7}.note_added", b"%d" % n, stream="INCIDENTS")
                for n in range(base, min(base + 100, count))
            )
        )


async def read_all(reader: Reader, pause: float = 0.0, block_once: float = 0.0) -> list[int]:
    """Sequences of every record read, checking that no batch exceeds 16."""
    seqs: list[int] = []
    batches: list[list[Delivered]] = []
    async for batch in reader.batches():
        batches.append(batch)
        seqs += [seq for seq, _, _, _ in batch]
        if block_once and len(batches) == 1:
            time.sleep(block_once)  # the loop stalls: the socket fills meanwhile
        await asyncio.sleep(pause)
    assert max(len(b) for b in batches) <= 16
    return seqs


async def test_a_slow_caller_pauses_the_reader_and_misses_nothing(
    store: EventStore, nc: NATS
) -> None:
    await published(nc)
    reader = Reader(nc, store.stream, "", 1, batch_size=16, until=RECORDS, max_batches=2)
    # The caller takes ~3k records/s, the log delivers far faster: the buffer fills (32), the
    # reader unsubscribes, and subscribes again from the first record it did not keep.
    seqs = await read_all(reader, pause=0.005)
    assert seqs == list(range(1, RECORDS + 1))
    assert reader.resubscribed > 0


async def test_what_nats_py_drops_from_its_queue_is_read_again(store: EventStore, nc: NATS) -> None:
    await published(nc)
    # nats-py's own queue takes 32 messages: a loop stalled while the records arrive makes it
    # drop most of one socket read (after its ordering check, so nats-py does not notice); the
    # reader sees the consumer sequence jump, or nothing more come while the last record said
    # more was pending (idle_s), and reads again from the first record it lacks.
    reader = Reader(
        nc,
        store.stream,
        "",
        1,
        batch_size=16,
        until=RECORDS,
        idle_s=0.1,
        max_batches=64,
        pending_msgs=32,
    )
    seqs = await read_all(reader, block_once=0.3)
    assert seqs == list(range(1, RECORDS + 1))
    assert reader.resubscribed > 0


async def test_follow_hands_out_full_batches_then_each_live_record(
    store: EventStore, nc: NATS
) -> None:
    await published(nc, 50)
    batches: list[Batch] = []
    async with asyncio.timeout(30):
        async for batch in store.follow(1, batch_size=20):
            batches.append(batch)
            if len(batches) == 3:  # caught up: a record arrives live
                await nc.jetstream().publish(
                    "incidents.INC-F1.note_added", b"live", stream="INCIDENTS"
                )
            if len(batches) == 4:
                break
    caught_up, live = batches[:3], batches[3]
    assert [(b.first_seq, b.last_seq, b.pending) for b in caught_up] == [
        (1, 20, 30),
        (21, 40, 10),
        (41, 50, 0),
    ]
    assert (live.first_seq, live.last_seq, live.pending) == (51, 51, 0)
    # Records that do not decode come out quarantined, still counted for the position.
    assert [q.seq for q in live.quarantined] == [51] and live.events == []
