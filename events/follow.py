"""Reading the log in order through a callback ordered consumer, into bounded batches.

A callback ordered consumer receives ~230k msgs/s where awaiting `next_msg` per message gets
~28k/s (DESIGN 12). The callback only parses the position and keeps the raw bytes in a bounded
buffer; the reader takes them out in batches (decoding is the caller's).

Backpressure: nats-py answers an ordered consumer's flow control as soon as a message arrives
when it has a callback, so the server never waits for a slow reader, and nats-py drops what
exceeds a subscription's pending limits, after its own ordering check: nothing would notice the
hole. So this reader bounds itself and notices every hole:
- when its buffer holds `max_batches` batches it pauses: it unsubscribes, ignores what still
  arrives, and subscribes again from the first record it did not keep once the caller took
  some out (those records are read again, never lost);
- each subscription's consumer sequence must run 1, 2, 3...: a gap (a message nats-py dropped,
  or nats-py restarting the consumer on its own) starts a new subscription from the first
  record not kept; so does an idle stretch while the last record said more was pending.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import suppress
from typing import Any, Final

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

log = logging.getLogger(__name__)

# Stream sequence, subject, data, records pending after it when it was delivered.
Delivered = tuple[int, str, bytes, int]

MAX_BATCHES: Final = 2  # batches buffered ahead of the caller before the reader pauses
# nats-py's own queue between its read loop and the callback, bounded (a drop is a gap: read
# again). The callback keeps up with the read loop, so it holds about one socket read.
PENDING_MSGS: Final = 65_536
PENDING_BYTES: Final = 64 * 2**20
_V1_TOKENS: Final = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>


class StalledError(Exception):
    """The stream stopped delivering before a bounded read reached its end."""


def position(reply: str) -> tuple[int, int, int]:
    """Stream sequence, consumer sequence and records pending, from a JetStream reply subject
    (parsed here: nats-py's `Msg.metadata` also builds a timestamp, a third of the cost)."""
    t = reply.split(".")
    # The v2 form adds the domain and account hash after `$JS.ACK` (nats-py's `Msg.Ack`).
    i = 5 if len(t) == _V1_TOKENS else 7
    return int(t[i]), int(t[i + 1]), int(t[i + 3])


class Reader:
    """One ordered reader of `stream` from `start` on `subject_filter` ("" for all).

    `batches()` yields batches of at most `batch_size` records: full ones while the log has
    more, the rest as soon as the reader is caught up. With `until`, it stops after the record
    at `until` (or the last one there is); without, it follows for ever.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        subject_filter: str,
        start: int,
        *,
        batch_size: int,
        until: int | None = None,
        idle_s: float = 1.0,
        max_batches: int = MAX_BATCHES,
        pending_msgs: int = PENDING_MSGS,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._stream = stream
        self._filter = subject_filter
        self._batch_size = batch_size
        self._until = until
        self._idle_s = idle_s
        self._limit = batch_size * max_batches
        self._pending_msgs = pending_msgs
        self.next_seq = max(start, 1)  # the first record not kept yet
        self._buffer: list[Delivered] = []
        self._arrived = asyncio.Event()
        self._sub: Any = None
        self._subscription = 0  # which subscription the callback accepts records of
        self._expected = 1  # its next consumer sequence
        self._pending = -1  # records pending after the last one kept (-1: none kept yet)
        self._ended = False  # `until` reached
        self._stalled = False  # paused or a gap: subscribe again from next_seq
        self._hand_out = False  # idle with records buffered: hand them out, full or not
        self._retried_at = 0  # where an idle reader last subscribed again
        self._reconnects = nc.stats["reconnects"]
        self._leaving: set[asyncio.Task[None]] = set()
        self.resubscribed = 0  # how often it subscribed again (pauses, gaps, reconnects)

    async def batches(self) -> AsyncIterator[list[Delivered]]:
        await self._subscribe()
        try:
            while True:
                if self._stalled and len(self._buffer) <= self._batch_size and not self._ended:
                    await self._subscribe()  # resume: the caller took records out
                if self._ready():
                    size = min(len(self._buffer), self._batch_size)
                    batch = self._buffer[:size]
                    del self._buffer[:size]
                    self._hand_out = False
                    yield batch
                    if self._ended and not self._buffer:
                        return
                    continue
                self._arrived.clear()
                seen = self.next_seq
                try:
                    await asyncio.wait_for(self._arrived.wait(), self._idle_s)
                except TimeoutError:
                    await self._idle(seen)
        finally:
            await self._leave(self._sub)
            if self._leaving:
                await asyncio.gather(*self._leaving)

    def _ready(self) -> bool:
        """A batch to hand out: a full one, or the rest when nothing more is on its way."""
        if not self._buffer:
            return False
        return (
            len(self._buffer) >= self._batch_size
            or self._ended
            or self._pending == 0
            or self._hand_out
        )

    async def _idle(self, seen: int) -> None:
        """Nothing arrived for `idle_s` (`seen`: `next_seq` when it started waiting)."""
        self._hand_out = bool(self._buffer)  # more was said to be pending, and did not come
        reconnected = self._nc.stats["reconnects"] != self._reconnects
        if not (reconnected or self._pending > 0 or self._until is not None):
            return  # caught up with a quiet log
        if self._until is not None and self._retried_at == seen:
            raise StalledError(f"delivery stopped before sequence {seen}")
        if self._nc.is_connected:
            # A restarted server may have lost the consumer, which nats-py would notice only
            # after three missed heartbeats (~15 s); a record said pending that never came may
            # have been dropped at the tail. Either way: subscribe again from where it stood.
            self._reconnects = self._nc.stats["reconnects"]
            self._retried_at = seen
            await self._subscribe()

    async def _subscribe(self) -> None:
        await self._leave(self._sub)
        self._subscription += 1
        self._expected = 1
        self._stalled = False
        if self._subscription > 1:
            self.resubscribed += 1
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.next_seq
        )
        self._sub = await self._js.subscribe(
            self._filter,
            stream=self._stream,
            config=config,
            ordered_consumer=True,
            cb=self._callback(self._subscription),
            pending_msgs_limit=self._pending_msgs,
            pending_bytes_limit=PENDING_BYTES,
        )

    def _callback(self, subscription: int) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        async def keep(msg: Msg) -> None:
            if subscription != self._subscription or self._stalled or self._ended:
                return  # a subscription on its way out: `next_seq` is read again
            seq, consumer_seq, pending = position(msg.reply)
            if consumer_seq != self._expected:
                self._stall(f"consumer sequence {consumer_seq}, expected {self._expected}")
                return
            self._expected += 1
            self.next_seq = seq + 1
            self._pending = pending
            self._buffer.append((seq, msg.subject, msg.data, pending))
            if self._until is not None and (seq >= self._until or pending == 0):
                self._ended = True
            elif len(self._buffer) >= self._limit:
                self._stall("")
            self._arrived.set()

        return keep

    def _stall(self, gap: str) -> None:
        """Stop taking records from this subscription; the reader subscribes again later."""
        if gap:
            log.info(
                "ordered read of %s: %s; reading again from %s", self._stream, gap, self.next_seq
            )
        self._stalled = True
        sub, self._sub = self._sub, None
        # Unsubscribing cancels the task running this callback: do it from a task of its own.
        task = asyncio.create_task(self._leave(sub))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)
        self._arrived.set()

    async def _leave(self, sub: Any) -> None:
        if sub is None:
            return
        if sub is self._sub:
            self._sub = None
        # Leaving after the connection closed (shutdown, outage) has nothing left to clean up.
        with suppress(nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
            await sub.unsubscribe()
