"""The language of the log: every event as a frozen msgspec Struct tagged by its contract name.

Producers, the store and the projector all speak these types; decoding is where validation
happens (types, enums, aware datetimes, sizes), so a bad event never reaches `decide`.
"""

import typing
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Final, TypeAlias

import msgspec
from msgspec import Meta, Struct, field

from events.upcasting import UpcastError, upcast

# Re-exported: the log's vocabulary is part of its language, imported from here everywhere.
from events.vocabulary import MONITORS as MONITORS
from events.vocabulary import ActionStatus as ActionStatus
from events.vocabulary import Audience as Audience
from events.vocabulary import Category as Category
from events.vocabulary import Channel as Channel
from events.vocabulary import CommsKind as CommsKind
from events.vocabulary import EvidenceKind as EvidenceKind
from events.vocabulary import MitigationAction as MitigationAction
from events.vocabulary import NoteKind as NoteKind
from events.vocabulary import Outcome as Outcome
from events.vocabulary import Phase as Phase
from events.vocabulary import PostmortemStatus as PostmortemStatus
from events.vocabulary import Role as Role
from events.vocabulary import Severity as Severity
from events.vocabulary import Source as Source
from events.vocabulary import Status as Status

INCIDENT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}\Z"
MAX_EVENT_BYTES: Final = 64 * 1024

# Field limits, in characters; one place to read or share them (e.g. intake formats).
MAX_NAME: Final = 256  # names, ids and label keys
MAX_TITLE: Final = 300
MAX_SHORT: Final = 1024
MAX_TEXT: Final = 16 * 1024
MAX_URI: Final = 2048
MAX_LABEL_VALUE: Final = 4096
MAX_MARKDOWN: Final = 48 * 1024  # a postmortem published inline
MAX_ESCALATION_LEVEL: Final = 10

IncidentId: TypeAlias = Annotated[str, Meta(pattern=INCIDENT_ID_PATTERN)]
# Printable ASCII without spaces: it travels as the Nats-Msg-Id header. Patterns end in \Z:
# msgspec searches with `re`, where "$" would also accept a trailing newline.
EventId: TypeAlias = Annotated[str, Meta(pattern=r"^[!-~]{1,128}\Z")]
UtcDatetime: TypeAlias = Annotated[datetime, Meta(tz=True)]
Name: TypeAlias = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
Title: TypeAlias = Annotated[str, Meta(min_length=1, max_length=MAX_TITLE)]
Short: TypeAlias = Annotated[str, Meta(max_length=MAX_SHORT)]
Text: TypeAlias = Annotated[str, Meta(max_length=MAX_TEXT)]
Uri: TypeAlias = Annotated[str, Meta(min_length=1, max_length=MAX_URI)]
Hex: TypeAlias = Annotated[str, Meta(pattern=r"^([0-9a-f]{64})?\Z")]
TraceId: TypeAlias = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{32}\Z")]
SpanId: TypeAlias = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{16}\Z")]
Labels: TypeAlias = dict[
    Annotated[str, Meta(max_length=MAX_NAME)], Annotated[str, Meta(max_length=MAX_LABEL_VALUE)]
]


# The principal of every write without tokens: nobody was authenticated.
LOCAL_PRINCIPAL: Final = "local"


class Principal(Struct, frozen=True, kw_only=True, gc=False):
    """Who was authenticated when the log accepted an event: a token's name and role, or
    `local` without tokens. Set by the service, never by a client; inside the hashed bytes."""

    name: str
    role: str


class Event(Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """The envelope every event carries. Never appears on the wire by itself.

    `SCHEMA_VERSION` is the shape of its type the service writes (`seal` stamps it into
    `schema_version`); bump it, with an upcaster (`events.upcasting`), for any change that is
    not purely additive. Records from before versions have no `schema_version`: version 1.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: EventId
    incident_id: IncidentId
    occurred_at: UtcDatetime
    actor: Name
    source: Source
    recorded_at: UtcDatetime | None = None
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    correlation_id: Short | None = None
    causation_id: Short | None = None
    prev_hash: Hex = ""
    hash: Hex = ""
    # Added with defaults (issue 11), so records stored before them decode, fold and verify.
    principal: Principal | None = None  # None: stored before principals were recorded
    schema_version: Annotated[int, Meta(ge=1)] = 1


# Subclasses inherit gc=False and tag_field from Event. They repeat `frozen=True`, inherited at
# runtime, for mypy: it refuses a non-frozen subclass of a frozen struct. A class that declares
# fields repeats `kw_only=True`: msgspec applies it only to the fields the class itself declares.
class _AlertFacts(Event, frozen=True, kw_only=True):
    fingerprint: Name
    alertname: Short = ""
    severity: Short | None = None
    labels: Labels = {}
    annotations: Labels = {}
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    generator_url: Uri | None = None
    group_key: Text | None = None
    dedup_key: Short | None = None
    # Added with a default (issue 12): alerts of the delivery its monitor left out.
    truncated_alerts: Annotated[int, Meta(ge=0)] = 0


class AlertFired(_AlertFacts, frozen=True, tag="alert.fired"):
    pass


class AlertResolved(_AlertFacts, frozen=True, tag="alert.resolved"):
    pass


class Impact(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Who and what an incident hurts, as stated at declaration or by `incident.impact_updated`.

    None in a field: not known (not "no"). Each statement replaces the previous one whole.
    """

    services: tuple[Name, ...] = ()
    regions: tuple[Name, ...] = ()
    customers: tuple[Name, ...] = ()  # customers or tenants affected, by name
    customers_affected: Annotated[int, Meta(ge=0)] | None = None
    users_affected_pct: Annotated[float, Meta(ge=0.0, le=100.0)] | None = None
    data_loss: bool | None = None
    security: bool | None = None
    revenue_at_risk: Annotated[int, Meta(ge=0)] | None = None  # whole currency units
    text: Text = ""


class IncidentDeclared(Event, frozen=True, kw_only=True, tag="incident.declared"):
    title: Title
    severity: Severity
    category: Category = Category.APPLICATION
    services: tuple[Name, ...] = ()
    summary: Text = ""
    detected_at: UtcDatetime | None = None
    # Added with defaults (issue 12): when users were first affected, if known (MTTD); impact.
    impact_started_at: UtcDatetime | None = None
    impact: Impact | None = None


class IncidentImpactUpdated(Event, frozen=True, kw_only=True, tag="incident.impact_updated"):
    impact: Impact


class IncidentAcknowledged(Event, frozen=True, tag="incident.acknowledged"):
    pass


class IncidentSeverityChanged(Event, frozen=True, kw_only=True, tag="incident.severity_changed"):
    from_: Severity = field(name="from")
    to: Severity
    reason: Text = ""


class IncidentStatusChanged(Event, frozen=True, kw_only=True, tag="incident.status_changed"):
    status: Status


class IncidentPhaseChanged(Event, frozen=True, kw_only=True, tag="incident.phase_changed"):
    phase: Phase


class IncidentRoleAssigned(Event, frozen=True, kw_only=True, tag="incident.role_assigned"):
    role: Role
    person: Name


class IncidentRoleReleased(Event, frozen=True, kw_only=True, tag="incident.role_released"):
    role: Role
    person: Name


class IncidentEscalated(Event, frozen=True, kw_only=True, tag="incident.escalated"):
    level: Annotated[int, Meta(ge=1, le=MAX_ESCALATION_LEVEL)]
    to: Name
    reason: Text = ""


class MitigationStarted(Event, frozen=True, kw_only=True, tag="mitigation.started"):
    mitigation_id: Name
    action: MitigationAction
    target: Short = ""
    automated: bool = False
    confidence: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None


class MitigationCompleted(Event, frozen=True, kw_only=True, tag="mitigation.completed"):
    mitigation_id: Name
    outcome: Outcome
    details: Text = ""


class CommsSent(Event, frozen=True, kw_only=True, tag="comms.sent"):
    audience: Audience
    kind: CommsKind
    message: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
    status: Status | None = None
    next_update_at: UtcDatetime | None = None
    # Added with defaults (issue 13): where it went, and the template it was rendered from.
    channel: Channel | None = None
    template: Name | None = None


class IncidentNoteAdded(Event, frozen=True, kw_only=True, tag="incident.note_added"):
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
    kind: NoteKind = NoteKind.NOTE


class EvidenceAttached(Event, frozen=True, kw_only=True, tag="evidence.attached"):
    kind: EvidenceKind
    uri: Uri
    sha256: Hex | None = None
    description: Text = ""


class IncidentResolved(Event, frozen=True, kw_only=True, tag="incident.resolved"):
    summary: Text = ""


class IncidentReopened(Event, frozen=True, kw_only=True, tag="incident.reopened"):
    reason: Text = ""


class IncidentClosed(Event, frozen=True, kw_only=True, tag="incident.closed"):
    reason: Text = ""


class PostmortemPublished(Event, frozen=True, kw_only=True, tag="postmortem.published"):
    uri: Uri | None = None
    markdown: Annotated[str, Meta(max_length=MAX_MARKDOWN)] | None = None
    summary: Text = ""
    # Added with defaults (issue 13); a record from before was a published, final document.
    authors: tuple[Name, ...] = ()
    status: PostmortemStatus = PostmortemStatus.FINAL


class PostmortemReviewed(Event, frozen=True, kw_only=True, tag="postmortem.reviewed"):
    """The postmortem's review meeting was held (runbook 002: within a week)."""

    held_at: UtcDatetime
    attendees: tuple[Name, ...] = ()
    summary: Text = ""


class ActionItemAdded(Event, frozen=True, kw_only=True, tag="action_item.added"):
    item_id: Name
    title: Title
    owner: Name | None = None
    due: date | None = None
    # Added with defaults (issue 13), as the runbooks' action-item tables have them.
    priority: Severity | None = None
    ticket_url: Uri | None = None


class ActionItemStarted(Event, frozen=True, kw_only=True, tag="action_item.started"):
    item_id: Name


class ActionItemCompleted(Event, frozen=True, kw_only=True, tag="action_item.completed"):
    item_id: Name


class NotificationSent(Event, frozen=True, kw_only=True, tag="notification.sent"):
    """Who was told what, and when: one delivery of the notifier, recorded once delivered.

    `target` names the route's destination for people (`#incidents`), never its secret URL.
    """

    obligation: Name  # what it was about: `next_update_due`, `ack_overdue`, an event type...
    route: Name
    channel: Name  # the delivery format: `slack`, `webhook`
    target: Short = ""
    delivery_id: Name
    attempts: Annotated[int, Meta(ge=1)] = 1
    message: Text = ""


class EventCorrected(Event, frozen=True, kw_only=True, tag="event.corrected"):
    """A correction of an earlier event of the same incident; nothing is rewritten."""

    target_event_id: EventId
    corrected_occurred_at: UtcDatetime | None = None
    corrected_text: Text | None = None
    corrected_actor: Name | None = None
    # Added with defaults (issue 12): a declaration's detection and impact start, correctable.
    corrected_detected_at: UtcDatetime | None = None
    corrected_impact_started_at: UtcDatetime | None = None
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


class EventRetracted(Event, frozen=True, kw_only=True, tag="event.retracted"):
    target_event_id: EventId
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


AnyEvent: TypeAlias = (
    AlertFired
    | AlertResolved
    | IncidentDeclared
    | IncidentImpactUpdated
    | IncidentAcknowledged
    | IncidentSeverityChanged
    | IncidentStatusChanged
    | IncidentPhaseChanged
    | IncidentRoleAssigned
    | IncidentRoleReleased
    | IncidentEscalated
    | MitigationStarted
    | MitigationCompleted
    | CommsSent
    | IncidentNoteAdded
    | EvidenceAttached
    | IncidentResolved
    | IncidentReopened
    | IncidentClosed
    | PostmortemPublished
    | PostmortemReviewed
    | ActionItemAdded
    | ActionItemStarted
    | ActionItemCompleted
    | NotificationSent
    | EventCorrected
    | EventRetracted
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = typing.get_args(AnyEvent)


class SchemaError(ValueError):
    """An event that does not decode; the message names the field and the reason."""


# Field order sorted: one canonical byte form per event, which the hash chain covers.
_encoder: Final = msgspec.json.Encoder(order="sorted")
_decoder: Final[msgspec.json.Decoder[AnyEvent]] = msgspec.json.Decoder(AnyEvent)
_raws: Final = msgspec.json.Decoder(list[msgspec.Raw])


class _Version(Struct):
    type: Any = None
    schema_version: Any = 1


_version: Final = msgspec.json.Decoder(_Version)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    """A stored or submitted event, validated; one older than its type's version upcast first.

    Unknown fields (a newer version's) are ignored, never a reason to refuse the record.
    """
    try:
        event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        if _older(data):  # an old shape may not fit the current one
            return _upcasted(data)
        raise SchemaError(str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"malformed JSON: {exc}") from exc
    return _upcasted(data) if event.schema_version < event.SCHEMA_VERSION else event


def _older(data: bytes | str) -> bool:
    try:
        found = _version.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    cls = _BY_TYPE.get(found.type) if isinstance(found.type, str) else None
    version = found.schema_version
    return cls is not None and isinstance(version, int) and version < cls.SCHEMA_VERSION


def _upcasted(data: bytes | str) -> AnyEvent:
    doc = msgspec.json.decode(data)
    kind, version = doc["type"], doc.get("schema_version", 1)
    try:
        doc = upcast(doc, kind, _BY_TYPE[kind].SCHEMA_VERSION)
    except UpcastError as exc:
        raise SchemaError(f"{exc} - at `$.schema_version`") from exc
    except Exception as exc:  # an upcaster that cannot read this record: refused, never a crash
        raise SchemaError(f"upcasting {kind} version {version}: {exc!r}") from exc
    try:
        return _decoder.decode(_encoder.encode(doc))
    except msgspec.ValidationError as exc:
        raise SchemaError(f"upcast from version {version}: {exc}") from exc


def decode_many(data: bytes | str) -> list[AnyEvent]:
    """A JSON array of events, each as `decode` reads it; errors name the index (`$[3].type`)."""
    try:
        items = _raws.decode(data)
    except msgspec.ValidationError as exc:
        raise SchemaError(str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"malformed JSON: {exc}") from exc
    events = []
    for index, raw in enumerate(items):
        try:
            events.append(decode(bytes(raw)))
        except SchemaError as exc:
            raise SchemaError(str(exc).replace(" - at `$", f" - at `$[{index}]", 1)) from exc
    return events


def _tag(cls: type[Event]) -> str:
    return str(cls.__struct_config__.tag)


# `__struct_config__` builds a new object on every access (~2 µs): the projector asks per event.
_TAGS: Final[dict[type[Event], str]] = {t: _tag(t) for t in EVENT_TYPES}


def type_name(event: Event | type[Event]) -> str:
    cls = event if isinstance(event, type) else type(event)
    return _TAGS.get(cls) or _tag(cls)


TYPE_NAMES: Final[frozenset[str]] = frozenset(_TAGS.values())
_BY_TYPE: Final[dict[str, type[Event]]] = {tag: t for t, tag in _TAGS.items()}


def to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def normalized(event: AnyEvent) -> AnyEvent:
    """The event with every datetime field in UTC, the form the log stores."""
    changes: dict[str, Any] = {}
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if (
            isinstance(value, datetime)
            and value.utcoffset() is not None
            and value.tzinfo is not UTC
        ):
            changes[name] = to_utc(value)
    return msgspec.structs.replace(event, **changes) if changes else event
