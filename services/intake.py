"""Intake: where every write lands, whichever transport brought it (HTTP, NATS, webhooks).

It validates (decode, limits), turns input into commands, runs them through the handler or
the correlator, and answers in one shape. Failures are `IntakeError`s with the HTTP-like kind
the edges map to a status code; nothing is appended for a request that fails validation.
"""

import asyncio
import enum
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from events.commands import AnyCommand, Record, command_event_id
from events.incident import Rejected, RejectionKind
from events.schema import MAX_EVENT_BYTES, AnyEvent, SchemaError, decode, type_name
from services.correlation import Correlator
from services.handler import Accepted, CommandHandler
from services.telemetry import APPENDED
from services.webhooks import PagerDutyAck, parse_alertmanager, parse_pagerduty

MAX_BATCH: Final = 1000
MAX_BODY_BYTES: Final = 1024 * 1024


class ErrorKind(enum.IntEnum):
    """Why a write failed, valued as the HTTP status it maps to."""

    MALFORMED = 400
    NOT_FOUND = 404
    CONFLICT = 409
    TOO_LARGE = 413
    INVALID = 422
    UNAVAILABLE = 503


class IntakeError(Exception):
    def __init__(self, kind: ErrorKind, detail: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.kind = kind
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, str | None]:
        return {"error": self.kind.name.lower(), "field": self.field, "detail": self.detail}


class StoredAnswer(msgspec.Struct, frozen=True):
    event_id: str
    type: str
    incident_id: str
    seq: int
    duplicate: bool


class Answer(msgspec.Struct, frozen=True):
    events: list[StoredAnswer]
    # Submitted events that changed nothing (a second acknowledgement...) and were not stored.
    unchanged: list[str] = []
    incident_id: str | None = None


_REJECTION_KINDS: Final = {
    RejectionKind.NOT_FOUND: ErrorKind.NOT_FOUND,
    RejectionKind.CONFLICT: ErrorKind.CONFLICT,
    RejectionKind.INVALID: ErrorKind.INVALID,
}


def refused(rejection: Rejected, field: str | None = None) -> IntakeError:
    return IntakeError(_REJECTION_KINDS[rejection.kind], rejection.reason, field)


def answer(*results: Accepted, unchanged: Sequence[str] = ()) -> Answer:
    for result in results:
        for appended in result.events:
            if not appended.duplicate:
                APPENDED.labels(appended.event.source.value).inc()
    stored = [
        StoredAnswer(a.event.event_id, type_name(a.event), a.event.incident_id, a.seq, a.duplicate)
        for result in results
        for a in result.events
    ]
    return Answer(stored, list(unchanged))


def _field_of(message: str) -> tuple[str | None, str]:
    """Split msgspec's "reason - at `$.path`" into (path, reason)."""
    reason, sep, where = message.rpartition(" - at `")
    if not sep:
        return None, message
    return where.rstrip("`").removeprefix("$").lstrip("."), reason


_raw_items: Final = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])


def decode_events(body: bytes) -> list[AnyEvent]:
    """One event (a JSON object) or a batch (an array), validated whole."""
    if len(body) > MAX_BODY_BYTES:
        raise IntakeError(ErrorKind.TOO_LARGE, f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        parsed = _raw_items.decode(body)
    except msgspec.DecodeError as exc:
        raise IntakeError(ErrorKind.MALFORMED, f"not a JSON object or array: {exc}") from exc
    single = isinstance(parsed, dict)
    items = [msgspec.Raw(body)] if single else parsed
    if len(items) > MAX_BATCH:
        raise IntakeError(ErrorKind.TOO_LARGE, f"a batch holds at most {MAX_BATCH} events")
    if not items:
        raise IntakeError(ErrorKind.INVALID, "the batch is empty")
    events: list[AnyEvent] = []
    for index, raw in enumerate(items):
        where = "" if single else f"[{index}]"
        if len(raw) > MAX_EVENT_BYTES:
            raise IntakeError(
                ErrorKind.TOO_LARGE, f"an event is at most {MAX_EVENT_BYTES} bytes", where or None
            )
        try:
            events.append(decode(bytes(raw)))
        except SchemaError as exc:
            path, reason = _field_of(str(exc))
            field = ".".join(p for p in (where, path) if p) or None
            raise IntakeError(ErrorKind.INVALID, reason, field) from exc
    seen: set[str] = set()
    for index, event in enumerate(events):
        if event.event_id in seen:
            raise IntakeError(
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
