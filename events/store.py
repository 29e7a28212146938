"""The event log on NATS JetStream: append, load one incident, read in order, follow.

The stream itself is set up by `events.stream.ensure_stream`. Appends are idempotent
(`Nats-Msg-Id` = event id, and each id claimed for one incident: `events.ids`) and optimistic:
each carries the sequence of the incident's last event as `Nats-Expected-Last-Subject-Sequence`
over `incidents.<id>.>`, so two writers deciding on the same state cannot both win. Several
events, of one decision or of a batch across incidents, go in one atomic batch. Reads use
ordered push consumers (DESIGN 12: ~5x pull batches, no acks). A record that does not decode
never stops a reader: it comes out quarantined (`events.records`).
"""

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Final, NoReturn

import nats.errors
import nats.js.errors
from msgspec import Struct
from nats.aio.client import Client as NATS

from events.batches import Message, publish_atomic
from events.fetch import FetchStalledError, RawRecord, fetch
from events.follow import Reader, StalledError
from events.ids import WRONG_LAST_SEQUENCE, EventIds, EventIdTakenError
from events.records import Batch, Loaded, Record, Stored, record, split
from events.schema import MAX_EVENT_BYTES, AnyEvent, decode, encode, type_name
from events.stream import event_ids_stream
from events.subjects import (
    ALL_INCIDENTS,
    INCIDENTS_PREFIX,
    event_subject,
    incident_filter,
    incident_of,
)

BATCH_DUPLICATE_MSG_ID: Final = 10201
# A clustered stream's answers of a moment, not of the request: another writer's message with
# this id is staged and not committed yet (it may land: decide again, and find it stored), or
# a replica did not see the whole atomic batch (nothing stored: try again later).
DUPLICATE_IN_PROCESS: Final = 10158
BATCH_INCOMPLETE: Final = 10176
_DECIDE_AGAIN: Final = WRONG_LAST_SEQUENCE | {BATCH_DUPLICATE_MSG_ID, DUPLICATE_IN_PROCESS}


class StoreUnavailableError(Exception):
    """JetStream did not answer; the write may or may not have landed (retry with the same id)."""


class EventTooLargeError(ValueError):
    """An event whose stored form would exceed the log's per-event limit."""

    def __init__(self, event_id: str, size: int) -> None:
        super().__init__(
            f"event {event_id} is {size} bytes; the log stores at most {MAX_EVENT_BYTES}"
        )
        self.event_id = event_id
        self.size = size


class ConcurrencyError(Exception):
    """The incident moved on since it was loaded; reload, decide again, retry."""

    def __init__(self, scope: str, expected_seq: int, detail: str) -> None:
        super().__init__(f"{scope} moved past sequence {expected_seq}: {detail}")
        self.scope = scope
        self.expected_seq = expected_seq


class Appended(Struct, frozen=True, gc=False):
    event: AnyEvent
    seq: int
    duplicate: bool


# What an outage of NATS or JetStream looks like to a client (each reader of the log maps it).
OUTAGES: Final = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    # A publish while the stream has no leader (a cluster electing one after a node died):
    # nats-py's name for NoRespondersError on js.publish.
    nats.js.errors.NoStreamResponseError,
)


def refused(exc: nats.js.errors.APIError, scope: str, expected_seq: int) -> NoReturn:
    """Raise what a JetStream refusal of an append means to the writer: decide again
    (`ConcurrencyError`), try later (`StoreUnavailableError`), or a fault (the error itself)."""
    if exc.err_code in _DECIDE_AGAIN:
        raise ConcurrencyError(scope, expected_seq, str(exc.description)) from exc
    if exc.err_code == BATCH_INCOMPLETE:
        raise StoreUnavailableError(f"JetStream did not take the whole batch: {exc.description}")
    raise exc


@contextmanager
def _unavailable(nc: NATS) -> Iterator[None]:
    """Turn NATS outages into one error the edges map to 503 + Retry-After."""
    if not nc.is_connected:
        # Fail fast while reconnecting: requests would only wait for their timeout.
        raise StoreUnavailableError("not connected to NATS (reconnecting)")
    try:
        yield
    except OUTAGES as exc:
        raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc


class EventStore:
    def __init__(self, nc: NATS, stream: str = "INCIDENTS", timeout: float = 5.0) -> None:
        self.nc = nc  # public for readers of the raw records (evidence)
        self._js = nc.jetstream(timeout=timeout)
        self.stream = stream
        self.timeout = timeout
        self.ids = EventIds(nc, event_ids_stream(stream), timeout)

    async def append(self, events: Sequence[AnyEvent], expected_seq: int) -> list[Appended]:
        """Append one decision's events, all of one incident, atomically."""
        return await self.append_all([(events, expected_seq)])

    async def append_all(
        self, decisions: Sequence[tuple[Sequence[AnyEvent], int]]
    ) -> list[Appended]:
        """Append the decisions of several incidents as one: all stored, or none.

        Each decision is one incident's events with the sequence of its last event as loaded;
        if any incident moved on, `ConcurrencyError` and nothing is stored. Every event id is
        claimed for its incident first (`EventIdTakenError` when another incident holds it).
        """
        events = [event for decided, _ in decisions for event in decided]
        if not events:
            return []
        # JetStream checks every expectation of a batch against the stream before the batch:
        # two decisions of one incident would both pass. Keyed by each decision's first event.
        guards: dict[str, dict[str, str]] = {}
        seen: set[str] = set()
        for decided, expected_seq in decisions:
            incident_id = decided[0].incident_id
            if incident_id in seen or any(e.incident_id != incident_id for e in decided):
                raise ValueError("each decision holds the events of one incident, once")
            seen.add(incident_id)
            guards[decided[0].event_id] = {
                "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
                "Nats-Expected-Last-Subject-Sequence-Subject": incident_filter(incident_id),
            }
        messages: list[Message] = []
        for event in events:
            data = encode(event)
            if len(data) > MAX_EVENT_BYTES:
                raise EventTooLargeError(event.event_id, len(data))
            decode(data)  # encoding does not validate: prove the log can read this back
            headers = {"Nats-Msg-Id": event.event_id, **guards.get(event.event_id, {})}
            messages.append((event_subject(event.incident_id, type_name(event)), data, headers))
        scope = ",".join(decided[0].incident_id for decided, _ in decisions)
        try:
            with _unavailable(self.nc):
                await self.ids.claim(events)
                if len(events) == 1:
                    return [await self._append_one(events[0], messages[0])]
                # Each incident's expectation rides on its first message: later ones would
                # see the incident already moved by the batch's own earlier messages.
                last_seq = await publish_atomic(self.nc, messages, self.timeout)
        except nats.js.errors.APIError as exc:
            refused(exc, scope, decisions[0][1])
        first = last_seq - len(events) + 1
        return [Appended(event, first + i, False) for i, event in enumerate(events)]

    async def _append_one(self, event: AnyEvent, message: Message) -> Appended:
        subject, data, headers = message
        ack = await self._js.publish(subject, data, stream=self.stream, headers=headers)
        if ack.duplicate:
            # Inside the duplicate window JetStream answers for the id wherever it is stored;
            # ids stored before claims existed can only be told apart here. From the leader,
            # which acknowledged it: a replica that has not applied it yet would say "not found".
            stored = await self._js.get_msg(self.stream, ack.seq)
            holder = incident_of(stored.subject or "")
            if holder != event.incident_id:
                raise EventIdTakenError(event.event_id, holder)
        return Appended(event, ack.seq, bool(ack.duplicate))

    async def last_on_subject(self, subject: str) -> tuple[int, bytes] | None:
        """The latest message on one subject (a last-value record such as a claim)."""
        try:
            with _unavailable(self.nc):
                msg = await self._js.get_last_msg(self.stream, subject, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        return msg.seq or 0, msg.data or b""

    async def put_if_last(self, subject: str, data: bytes, expected_seq: int, msg_id: str) -> int:
        """Publish on `subject` only if its latest message is still `expected_seq` (0: none)."""
        try:
            with _unavailable(self.nc):
                ack = await self._js.publish(
                    subject,
                    data,
                    stream=self.stream,
                    headers={
                        "Nats-Msg-Id": msg_id,
                        "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
                    },
                )
        except nats.js.errors.APIError as exc:
            refused(exc, subject, expected_seq)
        return ack.seq

    async def bounds(self) -> tuple[int, int]:
        """First and last sequence the stream holds now."""
        with _unavailable(self.nc):
            info = await self._js.stream_info(self.stream)
        return int(info.state.first_seq), int(info.state.last_seq)

    async def last_seq(self) -> int:
        return (await self.bounds())[1]

    async def max_age(self) -> float:
        """The stream's max_age in seconds (0: records never expire)."""
        with _unavailable(self.nc):
            info = await self._js.stream_info(self.stream)
        return float(info.config.max_age or 0)

    async def first_retained(self) -> tuple[int, datetime | None]:
        """The oldest record the stream still holds and when it was stored (it expires at that
        time + max_age); (last sequence + 1, None) when everything has expired."""
        first, last = await self.bounds()
        try:
            with _unavailable(self.nc):
                msg = await self._js.get_msg(
                    self.stream, seq=max(first, 1), subject=">", next=True, direct=True
                )
        except nats.js.errors.NotFoundError:
            return last + 1, None
        return msg.seq or first, msg.time

    async def records(self, subject_filter: str) -> list[tuple[int, bytes]]:
        """Raw records on `subject_filter` the stream still holds (service records), in order."""
        try:
            with _unavailable(self.nc):
                last = await self._js.get_last_msg(self.stream, subject_filter, direct=True)
        except nats.js.errors.NotFoundError:
            return []
        raw = await self._fetch(subject_filter, last.seq or 0)
        return [(seq, data) for seq, _, data in raw]

    async def incident_last_seq(self, incident_id: str) -> int:
        """Sequence of the incident's latest event, 0 when it has none (one direct get)."""
        try:
            with _unavailable(self.nc):
                last = await self._js.get_last_msg(
                    self.stream, incident_filter(incident_id), direct=True
                )
        except nats.js.errors.NotFoundError:
            return 0
        return last.seq or 0

    async def load(self, incident_id: str) -> Loaded:
        """The incident's events in order, and the sequence writers must expect next."""
        last_seq = await self.incident_last_seq(incident_id)
        if last_seq == 0:
            return Loaded([], 0)
        raw = await self._fetch(incident_filter(incident_id), last_seq)
        # Decoding a long incident is CPU work: off the event loop.
        records = await asyncio.to_thread(lambda: [record(*r) for r in raw])
        # Quarantined records are no part of the fold, but appends must expect the last one.
        return Loaded(split(records)[0], records[-1].seq if records else 0)

    async def _fetch(self, subject_filter: str, until: int) -> list[RawRecord]:
        try:
            with _unavailable(self.nc):
                return await fetch(self._js, self.stream, subject_filter, until, self.timeout)
        except FetchStalledError as exc:
            raise StoreUnavailableError(f"the log stopped delivering while reading: {exc}") from exc

    async def read(
        self,
        from_seq: int = 1,
        until_seq: int | None = None,
        subject_filter: str = ALL_INCIDENTS,
        batch_size: int = 1000,
    ) -> AsyncIterator[list[Stored]]:
        """Incident events in log order from `from_seq` to `until_seq` (default: the end now).

        Service records under other prefixes (correlation claims, retention) are not events of
        an incident and are skipped; so are quarantined records (`scan` has them).
        """
        async for batch in self.scan(from_seq, until_seq, subject_filter, batch_size):
            if batch.events:
                yield batch.events

    async def scan(
        self,
        from_seq: int = 1,
        until_seq: int | None = None,
        subject_filter: str = ALL_INCIDENTS,
        batch_size: int = 1000,
    ) -> AsyncIterator[Batch]:
        """As `read`, with the records that do not decode and the position each batch reaches:
        what a replay folds, so that it quarantines exactly what live projection does."""
        until = await self.last_seq() if until_seq is None else until_seq
        start = await self._first_match(subject_filter, max(from_seq, 1))
        if start is None or start > until:
            return  # nothing there: only service records, or everything expired
        async for records in self._read(start, until, subject_filter, batch_size):
            events, quarantined = split(records)
            yield Batch(events, records[-1].seq, first_seq=records[0].seq, quarantined=quarantined)

    async def _read(
        self, start: int, until: int, subject_filter: str, batch_size: int
    ) -> AsyncIterator[list[Record]]:
        reader = Reader(
            self.nc,
            self.stream,
            subject_filter,
            start,
            batch_size=batch_size,
            until=until,
            idle_s=self.timeout,
        )
        try:
            with _unavailable(self.nc):
                async for delivered in reader.batches():
                    # Decoding on the loop while the caller writes the previous batch elsewhere.
                    yield [record(seq, subject, data) for seq, subject, data, _ in delivered]
        except StalledError as exc:
            raise StoreUnavailableError(f"the log stopped delivering while reading: {exc}") from exc

    async def follow(self, from_seq: int, batch_size: int = 1000) -> AsyncIterator[Batch]:
        """Everything from `from_seq` on, as it arrives, for ever (the projector's feed): full
        batches while catching up, what there is once caught up (`events.follow`).

        Every record counts for the position, also service records, which carry no incident
        event: a reader that checkpoints `last_seq` then reaches the stream's last sequence.
        """
        # No filter: the stream holds only our prefixes, and a multi-subject filter measured
        # ~8x slower to deliver (2.5k vs 18k msgs/s on nats-server 2.15.1).
        reader = Reader(self.nc, self.stream, "", from_seq, batch_size=batch_size)
        with _unavailable(self.nc):
            async for delivered in reader.batches():
                last_seq, _, _, pending = delivered[-1]
                events, quarantined = split(
                    record(seq, subject, data)
                    for seq, subject, data, _ in delivered
                    if subject.startswith(INCIDENTS_PREFIX + ".")
                )
                yield Batch(events, last_seq, pending, delivered[0][0], quarantined)

    async def _first_match(self, subject_filter: str, start: int) -> int | None:
        """Sequence of the first record on `subject_filter` at or after `start` (one direct get):
        an ordered consumer with nothing to deliver would only wait for its timeout."""
        try:
            with _unavailable(self.nc):
                msg = await self._js.get_msg(
                    self.stream, seq=start, subject=subject_filter, next=True, direct=True
                )
        except nats.js.errors.NotFoundError:
            return None
        return msg.seq or start
