"""Intake: where every write lands, whichever transport brought it (HTTP, NATS, webhooks).

It validates (decode, limits), turns input into commands, runs them through the handler or
the correlator, and answers in one shape. Failures are `ServiceError`s whose kind each edge
maps to its own answer; nothing is appended for a request that fails validation.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from events import changes
from events.aliases import DEFAULT_SEVERITY_ALIASES, decode_aliased
from events.changes import ChangeError, ChangeRecorded
from events.commands import AnyCommand, Record, command_event_id, command_time
from events.decisions import Rejected
from events.ids import EventIdTakenError
from events.schema import MAX_EVENT_BYTES, AnyEvent, SchemaError, Severity, Source, type_name
from events.store import ConcurrencyError, EventTooLargeError
from events.subjects import SERVICE_ID_PREFIX
from services.auth import Permission, Principal
from services.errors import ErrorKind, ServiceError, located, refused
from services.formats import utf8
from services.formats.alertmanager import parse_alertmanager
from services.formats.instants import require_utc
from services.formats.pagerduty import PagerDutyAck, PagerDutyError, parse_change, parse_pagerduty
from services.write.answers import Answer, answer
from services.write.correlation import Correlator
from services.write.handler import Accepted, CommandHandler, Refused
from services.write.principals import forbidden, may_append, recorded, require

MAX_BATCH: Final = 1000
MAX_BODY_BYTES: Final = 1024 * 1024


_raw_items: Final = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])


def _log_refusal(exc: EventIdTakenError | EventTooLargeError, field: str | None) -> ServiceError:
    """What the log refused to store, as the error every edge answers."""
    kind = ErrorKind.CONFLICT if isinstance(exc, EventIdTakenError) else ErrorKind.TOO_LARGE
    return ServiceError(kind, str(exc), field)


def decode_events(
    body: bytes, severity_aliases: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES
) -> list[AnyEvent]:
    """One event (a JSON object) or a batch (an array), validated whole; a severity given as
    one of `severity_aliases` (`SEV-1`) is decoded as the severity it names (stored `P0`)."""
    if len(body) > MAX_BODY_BYTES:
        raise ServiceError(ErrorKind.TOO_LARGE, f"body is larger than {MAX_BODY_BYTES} bytes")
    utf8.require(body)  # names the field: msgspec's UnicodeDecodeError names none
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
            events.append(decode_aliased(bytes(raw), severity_aliases))
        except SchemaError as exc:
            path, reason = located(str(exc))
            field = ".".join(p for p in (where, path) if p) or None
            raise ServiceError(ErrorKind.INVALID, reason, field) from exc
        require_utc(events[-1], where)
    seen: set[str] = set()
    for index, event in enumerate(events):
        where = f"[{index}].event_id" if not single else "event_id"
        if event.event_id.startswith(SERVICE_ID_PREFIX):
            detail = f"ids starting with {SERVICE_ID_PREFIX!r} are the service's own"
            raise ServiceError(ErrorKind.INVALID, detail, where)
        if event.event_id in seen:
            raise ServiceError(
                ErrorKind.INVALID, f"event_id {event.event_id} appears twice", f"[{index}].event_id"
            )
        seen.add(event.event_id)
    return events


# How far ahead of this host's clock a reported time may be: clocks drift, the future is not
# a time anything happened at.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)


class ChangeStored(msgspec.Struct, frozen=True):
    """A change record as the log holds it; `duplicate`: stored before, by an earlier delivery."""

    record: ChangeRecorded
    seq: int
    duplicate: bool


def _by(event: AnyEvent, principal: Principal) -> AnyEvent:
    return msgspec.structs.replace(event, principal=recorded(principal))


class Intake:
    """Every write names its principal: the role table (`principals`) is checked before
    anything is decided, and the principal is recorded on every event it appends."""

    def __init__(
        self,
        handler: CommandHandler,
        correlator: Correlator,
        severity_aliases: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES,
    ) -> None:
        self.handler = handler
        self.correlator = correlator
        self.severity_aliases = severity_aliases  # the policy's: every edge maps them the same

    def decode_events(self, body: bytes) -> list[AnyEvent]:
        """`decode_events` with this service's severity aliases."""
        return decode_events(body, self.severity_aliases)

    async def command(self, command: AnyCommand, principal: Principal) -> Answer:
        """A person's command; its actor is kept as claimed, next to the recorded principal."""
        require(principal, Permission.COMMAND)
        require_utc(command)
        self._not_future(command_time(command), "occurred_at")
        if isinstance(command, Record):
            command = Record(_by(command.event, principal))
        else:
            command = msgspec.structs.replace(command, principal=recorded(principal))
        try:
            result = await self.handler.handle(command)
        except EventIdTakenError as exc:
            raise _log_refusal(exc, "event_id") from exc
        except EventTooLargeError as exc:
            raise _log_refusal(exc, None) from exc
        if isinstance(result, Rejected):
            raise refused(result)
        return answer(result)

    async def events(self, events: Sequence[AnyEvent], principal: Principal) -> Answer:
        """Append producer events, per incident in order, all in one atomic batch.

        Every incident's events are decided on its state in the log before anything is
        appended, so a batch with one refused event appends nothing, and a batch whose append
        fails (a conflict that outlasts the retries, an outage) has stored nothing either. An
        event type the principal's role may not append refuses the batch; a `principal` the
        client put in an event is replaced by the authenticated one.
        """
        position = {event.event_id: index for index, event in enumerate(events)}

        def where(event_id: str, field: str = "") -> str | None:
            index = f"[{position[event_id]}]" if len(events) > 1 and event_id in position else ""
            return ".".join(part for part in (index, field) if part) or None

        for event in events:
            if not may_append(principal, type_name(event)):
                what = f"append {type_name(event)}"
                raise forbidden(principal, what, where(event.event_id, "type"))
        for event in events:
            self._not_future(event.occurred_at, where(event.event_id, "occurred_at"))
        groups: dict[str, list[AnyCommand]] = defaultdict(list)
        for event in events:
            groups[event.incident_id].append(Record(_by(event, principal)))
        try:
            result = await self.handler.handle_batch(groups)
        except EventIdTakenError as exc:
            raise _log_refusal(exc, where(exc.event_id, "event_id")) from exc
        except EventTooLargeError as exc:
            raise _log_refusal(exc, where(exc.event_id)) from exc
        if isinstance(result, Refused):
            raise refused(result.rejection, where(command_event_id(result.command)))
        stored = {a.event.event_id: a for a in result.events}
        return answer(
            Accepted([stored[e.event_id] for e in events if e.event_id in stored]),
            unchanged=[e.event_id for e in events if e.event_id not in stored],
        )

    def _not_future(self, moment: datetime, field: str | None) -> None:
        now = self.handler.clock()
        if moment > now + MAX_CLOCK_SKEW:
            raise ServiceError(
                ErrorKind.INVALID,
                f"{moment.isoformat()} is in the future (now {now.isoformat()})",
                field,
            )

    async def alertmanager(
        self, body: bytes, received_at: datetime, principal: Principal
    ) -> Answer:
        require(principal, Permission.APPEND)
        observations = parse_alertmanager(body, received_at)
        try:
            results = await self.correlator.observe_all(observations, received_at, principal)
        except (EventIdTakenError, EventTooLargeError) as exc:
            raise _log_refusal(exc, None) from exc
        return answer(*results)

    async def pagerduty(
        self, body: bytes, received_at: datetime, principal: Principal
    ) -> tuple[str, Answer]:
        """A PagerDuty Events API v2 event; returns the sender's dedup_key and what was stored.

        Acknowledging a dedup_key without an incident of this sender's, or whose incident cannot
        take it (closed), stores nothing and is no error: PagerDuty answers it 202 as well. So
        is resolving one (the correlator finds nothing to resolve)."""
        require(principal, Permission.APPEND)
        event = parse_pagerduty(body, received_at)
        try:
            if isinstance(event, PagerDutyAck):
                result = await self.correlator.acknowledge(event, principal)
                if isinstance(result, Rejected):
                    return event.dedup_key, answer(unchanged=[event.event_id])
                return event.dedup_key, answer(result)
            observed = await self.correlator.observe(event, received_at, principal)
            return event.dedup_key or event.key, answer(observed)
        except (EventIdTakenError, EventTooLargeError) as exc:
            raise _log_refusal(exc, None) from exc

    async def change(
        self, body: bytes, received_at: datetime, principal: Principal
    ) -> ChangeStored:
        """A PagerDuty change event: one `change.recorded` record, outside any incident.

        A retried delivery is answered as the original and stores nothing: always when the
        change names its time (`payload.timestamp`, then the same body is the same change);
        without a time, inside the stream's duplicate window only, because the same deploy
        announced again later is another change (`events.changes`)."""
        require(principal, Permission.APPEND)
        change = parse_change(body, received_at)
        record = ChangeRecorded(
            change_id=change.change_id,
            sender=change.sender,
            occurred_at=change.occurred_at,
            recorded_at=self.handler.clock(),
            actor=Source.PAGERDUTY.value,
            source=Source.PAGERDUTY,
            principal=recorded(principal),
            summary=change.summary,
            host=change.host,
            custom_details=change.custom_details,
            links=change.links,
        )
        data = changes.encode(record)
        try:
            changes.decode(data)  # encoding does not validate: prove the log can read it back
        except ChangeError as exc:
            raise PagerDutyError([f"'payload' cannot be recorded: {exc}"]) from exc
        if len(data) > MAX_EVENT_BYTES:
            raise PagerDutyError(
                [f"'payload' is {len(data)} bytes once recorded; at most {MAX_EVENT_BYTES}"]
            )
        return await self._append_change(record, data, once=change.timestamped)

    async def _append_change(self, record: ChangeRecorded, data: bytes, once: bool) -> ChangeStored:
        """On the change's own subject, with its id as the message id (the duplicate window
        answers a quick retry with the original); `once`: a record already on the subject is
        this change, stored by an earlier delivery, at any time inside retention."""
        store, subject = self.handler.store, changes.subject(record)
        found = await store.last_on_subject(subject)
        last = found[0] if found else 0
        if once and last:
            return ChangeStored(record, last, True)
        try:
            seq = await store.put_if_last(subject, data, last, msg_id=record.change_id)
        except ConcurrencyError:
            # The same change, delivered twice at once: the other delivery stored it.
            found = await store.last_on_subject(subject)
            return ChangeStored(record, found[0] if found else last, True)
        # Inside the duplicate window JetStream answers with the original's sequence.
        return ChangeStored(record, seq, seq <= last)
