"""Intake: where every write lands, whichever transport brought it (HTTP, NATS, webhooks).

It validates (decode, limits), turns input into commands, runs them through the handler or
the correlator, and answers in one shape. Failures are `ServiceError`s whose kind each edge
maps to its own answer; nothing is appended for a request that fails validation.
"""

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from events.commands import AnyCommand, Record, command_event_id
from events.decisions import Rejected
from events.schema import MAX_EVENT_BYTES, AnyEvent, SchemaError, decode
from services.errors import ErrorKind, ServiceError, located, refused
from services.formats.alertmanager import parse_alertmanager
from services.formats.pagerduty import PagerDutyAck, parse_pagerduty
from services.write.answers import Answer, answer
from services.write.correlation import Correlator
from services.write.handler import Accepted, CommandHandler

MAX_BATCH: Final = 1000
MAX_BODY_BYTES: Final = 1024 * 1024


_raw_items: Final = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])


def decode_events(body: bytes) -> list[AnyEvent]:
    """One event (a JSON object) or a batch (an array), validated whole."""
    if len(body) > MAX_BODY_BYTES:
        raise ServiceError(ErrorKind.TOO_LARGE, f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        parsed = _raw_items.decode(body)
    except msgspec.DecodeError as exc:
        raise ServiceError(ErrorKind.MALFORMED, f"not a JSON object or array: {exc}") from exc
    single = isinstance(parsed, dict)
    items = [msgspec.Raw(body)] if single else parsed
    if len(items) > MAX_BATCH:
        raise ServiceError(ErrorKind.TOO_LARGE, f"a batch holds at most {MAX_BATCH} events")
    if not items:
        raise ServiceError(ErrorKind.INVALID, "the batch is empty")
    events: list[AnyEvent] = []
    for index, raw in enumerate(items):
        where = "" if single else f"[{index}]"
        if len(raw) > MAX_EVENT_BYTES:
            raise ServiceError(
                ErrorKind.TOO_LARGE, f"an event is at most {MAX_EVENT_BYTES} bytes", where or None
            )
        try:
            events.append(decode(bytes(raw)))
        except SchemaError as exc:
            path, reason = located(str(exc))
            field = ".".join(p for p in (where, path) if p) or None
            raise ServiceError(ErrorKind.INVALID, reason, field) from exc
    seen: set[str] = set()
    for index, event in enumerate(events):
        if event.event_id in seen:
            raise ServiceError(
                ErrorKind.INVALID, f"event_id {event.event_id} appears twice", f"[{index}].event_id"
            )
        seen.add(event.event_id)
    return events


class Intake:
    def __init__(self, handler: CommandHandler, correlator: Correlator) -> None:
        self.handler = handler
        self.correlator = correlator

    async def command(self, command: AnyCommand) -> Answer:
        result = await self.handler.handle(command)
        if isinstance(result, Rejected):
            raise refused(result)
        return answer(result)

    async def events(self, events: Sequence[AnyEvent]) -> Answer:
        """Append producer events; per incident in order, one atomic batch per incident.

        Every incident's events are checked against its state before anything is appended,
        so a batch with one refused event appends nothing.
        """
        groups: dict[str, list[AnyCommand]] = defaultdict(list)
        for event in events:
            groups[event.incident_id].append(Record(event))
        checks = await asyncio.gather(
            *(self.handler.check_all(incident_id, c) for incident_id, c in groups.items())
        )
        position = {event.event_id: index for index, event in enumerate(events)}
        for check in checks:
            if check is not None:
                command, rejection = check
                index = position[command_event_id(command)]
                raise refused(rejection, f"[{index}]" if len(events) > 1 else None)
        results = await asyncio.gather(
            *(self.handler.handle_all(incident_id, c) for incident_id, c in groups.items())
        )
        for result in results:
            if isinstance(result, Rejected):
                # Only a concurrent writer can make a checked decision fail here.
                raise refused(result)
        stored = {a.event.event_id: a for r in results if isinstance(r, Accepted) for a in r.events}
        return answer(
            Accepted([stored[e.event_id] for e in events if e.event_id in stored]),
            unchanged=[e.event_id for e in events if e.event_id not in stored],
        )

    async def alertmanager(self, body: bytes, received_at: datetime) -> Answer:
        observations = parse_alertmanager(body, received_at)
        results = [await self.correlator.observe(obs, received_at) for obs in observations]
        return answer(*results)

    async def pagerduty(self, body: bytes, received_at: datetime) -> tuple[str, Answer]:
        event = parse_pagerduty(body, received_at)
        if isinstance(event, PagerDutyAck):
            result = await self.correlator.acknowledge(event)
            if isinstance(result, Rejected):
                raise refused(result, "dedup_key")
            return event.key, answer(result)
        return event.key, answer(await self.correlator.observe(event, received_at))
