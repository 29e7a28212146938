"""The stream as raw records, read without decoding, so damaged bytes are reported, not raised.

EventStore decodes all it reads; evidence needs the bytes exactly as stored, the stream's own
state, and the gaps where nats-server left out a record whose checksum failed.
"""

from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from datetime import datetime
from typing import Any, Final, NamedTuple

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from events.store import OUTAGES, EventStore, StoreUnavailableError
from events.subjects import INCIDENTS_PREFIX
from services.errors import ErrorKind, ServiceError


class EvidenceError(ServiceError):
    """Nothing to export (404), a bad request (422) or a damaged log (409)."""


class Record(NamedTuple):
    seq: int
    subject: str
    raw: bytes


class StreamState(msgspec.Struct):
    messages: int = 0
    first_seq: int = 0
    first_ts: datetime | None = None
    last_seq: int = 0
    subjects: dict[str, int] | None = None


class _StreamInfo(msgspec.Struct):
    state: StreamState = msgspec.field(default_factory=StreamState)
    error: dict[str, Any] | None = None


class Envelope(msgspec.Struct):
    incident_id: str = ""
    event_id: str = ""
    prev_hash: Any = None
    hash: Any = None
    recorded_at: datetime | None = None


_info: Final = msgspec.json.Decoder(_StreamInfo)
envelope: Final = msgspec.json.Decoder(Envelope)


class Log:
    """The stream as raw records, in order, through an ordered consumer."""

    def __init__(self, nc: NATS, stream: str = "INCIDENTS", timeout: float = 5.0) -> None:
        self.nc = nc
        self.stream = stream
        self.timeout = timeout
        self._js = nc.jetstream(timeout=timeout)

    @classmethod
    def of(cls, store: EventStore) -> "Log":
        return cls(store.nc, store.stream, store.timeout)

    async def state(self, subjects_filter: str | None = None) -> StreamState:
        """The stream's state as the server reports it (with per-subject counts if filtered)."""
        request = {"subjects_filter": subjects_filter} if subjects_filter else {}
        try:
            reply = await self.nc.request(
                f"$JS.API.STREAM.INFO.{self.stream}",
                msgspec.json.encode(request),
                timeout=self.timeout,
            )
        except OUTAGES as exc:
            raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        info = _info.decode(reply.data)
        if info.error is not None:
            raise EvidenceError(
                ErrorKind.NOT_FOUND, f"stream {self.stream}: {info.error.get('description')}"
            )
        return info.state

    async def records(
        self, first_seq: int, last_seq: int, subject_filter: str = "", batch_size: int = 1000
    ) -> AsyncIterator[list[Record]]:
        """Records from `first_seq` through `last_seq` that the server delivers.

        nats-server leaves out a record whose checksum fails, so damage shows as a gap. When
        nothing arrives for `timeout` the rest is probed by direct get: a slow server resumes,
        a damaged tail ends the read.
        """
        start, stalled = max(first_seq, 1), 0
        while start <= last_seq:
            async for batch in self._deliver(start, last_seq, subject_filter, batch_size):
                start, stalled = batch[-1].seq + 1, 0
                yield batch
            if subject_filter:
                return  # a filtered read cannot tell a gap: export compares counts instead
            resume = await self._deliverable(start, last_seq)
            stalled = stalled + 1 if resume == start else 0
            if stalled > 1:
                raise StoreUnavailableError(f"the log stopped delivering at seq {start}")
            start = resume

    async def _deliver(
        self, start: int, last_seq: int, subject_filter: str, batch_size: int
    ) -> AsyncIterator[list[Record]]:
        """One ordered consumer from `start`, until `last_seq` or `timeout` without a record."""
        try:
            sub = await self._js.subscribe(
                subject_filter,
                stream=self.stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
                ),
                ordered_consumer=True,
                pending_msgs_limit=max(batch_size * 64, 65536),
            )
        except OUTAGES as exc:
            raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        batch: list[Record] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=self.timeout)
                except nats.errors.TimeoutError:
                    break
                except nats.errors.ConnectionClosedError as exc:
                    raise StoreUnavailableError("the NATS connection closed while reading") from exc
                meta = msg.metadata
                if meta.sequence.stream > last_seq:  # appended after the caller's snapshot
                    break
                batch.append(Record(meta.sequence.stream, msg.subject, msg.data))
                if meta.sequence.stream == last_seq or meta.num_pending == 0:
                    break
                if len(batch) >= batch_size or sub.pending_msgs == 0:
                    yield batch
                    batch = []
        finally:
            with suppress(nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()
        if batch:
            yield batch

    async def _deliverable(self, seq: int, last_seq: int) -> int:
        """The first sequence from `seq` on that the server hands out; past `last_seq`: none."""
        while seq <= last_seq:
            try:
                await self._js.get_msg(self.stream, seq, direct=True)
                return seq
            except nats.js.errors.NotFoundError:
                seq += 1
            except OUTAGES as exc:
                raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        return seq


def is_event(record: Record) -> bool:
    return record.subject.startswith(INCIDENTS_PREFIX + ".")


class Gap(msgspec.Struct):
    first_seq: int
    last_seq: int
    reason: str


def find_gaps(seqs: Iterable[int], first_seq: int, last_seq: int) -> list[Gap]:
    gaps, expected = [], max(first_seq, 1)
    for seq in seqs:
        if seq > expected:
            gaps.append(Gap(expected, seq - 1, "held by the stream but not delivered (damaged)"))
        expected = seq + 1
    if expected <= last_seq:
        gaps.append(Gap(expected, last_seq, "held by the stream but not delivered (damaged)"))
    return gaps
