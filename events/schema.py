"""The language of the log: every event as a frozen msgspec Struct tagged by its contract name.

Producers, the store and the projector all speak these types; decoding is where validation
happens (types, enums, aware datetimes, sizes), so a bad event never reaches `decide`.
"""

import enum
import typing
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, TypeAlias

import msgspec
from msgspec import Meta, Struct, field


class Severity(enum.StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Status(enum.StrEnum):
    """Public-facing status, as used in comms templates."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class Phase(enum.StrEnum):
    """Internal response phase."""

    DETECTED = "detected"
    TRIAGE = "triage"
    INVESTIGATION = "investigation"
    MITIGATION = "mitigation"
    VALIDATION = "validation"
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"


class Category(enum.StrEnum):
    INFRASTRUCTURE = "infrastructure"
    APPLICATION = "application"
    DATA = "data"
    SECURITY = "security"
    EXTERNAL = "external"


class Role(enum.StrEnum):
    COMMANDER = "commander"
    OPS = "ops"
    COMMS = "comms"
    SCRIBE = "scribe"
    TECH_LEAD = "tech_lead"
    LIAISON = "liaison"


class Audience(enum.StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"
    STATUS_PAGE = "status_page"
    CUSTOMERS = "customers"
    EXECUTIVES = "executives"


class CommsKind(enum.StrEnum):
    INITIAL = "initial"
    UPDATE = "update"
    RESOLUTION = "resolution"


class MitigationAction(enum.StrEnum):
    ROLLBACK = "rollback"
    SCALE = "scale"
    FAILOVER = "failover"
    RESTART = "restart"
    FEATURE_FLAG = "feature_flag"
    TRAFFIC_SHIFT = "traffic_shift"
    DLQ_FLUSH = "dlq_flush"
    OTHER = "other"


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class NoteKind(enum.StrEnum):
    NOTE = "note"
    DECISION = "decision"
    ROOT_CAUSE = "root_cause"
    IMPACT = "impact"


class EvidenceKind(enum.StrEnum):
    TRACE = "trace"
    LOG_QUERY = "log_query"
    DASHBOARD = "dashboard"
    FILE = "file"


class Source(enum.StrEnum):
    """The channel an event came through."""

    CLI = "cli"
    API = "api"
    WEB = "web"
    ALERTMANAGER = "alertmanager"
    PAGERDUTY = "pagerduty"
    NATS = "nats"
    SYNTHETIC = "synthetic"
    SYSTEM = "system"


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


class Event(Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """The envelope every event carries. Never appears on the wire by itself."""

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


class AlertFired(_AlertFacts, frozen=True, tag="alert.fired"):
    pass


class AlertResolved(_AlertFacts, frozen=True, tag="alert.resolved"):
    pass


class IncidentDeclared(Event, frozen=True, kw_only=True, tag="incident.declared"):
    title: Title
    severity: Severity
    category: Category = Category.APPLICATION
    services: tuple[Name, ...] = ()
    summary: Text = ""
    detected_at: UtcDatetime | None = None


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


class ActionItemAdded(Event, frozen=True, kw_only=True, tag="action_item.added"):
    item_id: Name
    title: Title
    owner: Name | None = None
    due: date | None = None


class ActionItemCompleted(Event, frozen=True, kw_only=True, tag="action_item.completed"):
    item_id: Name


class EventCorrected(Event, frozen=True, kw_only=True, tag="event.corrected"):
    """A correction of an earlier event of the same incident; nothing is rewritten."""

    target_event_id: EventId
    corrected_occurred_at: UtcDatetime | None = None
    corrected_text: Text | None = None
    corrected_actor: Name | None = None
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


class EventRetracted(Event, frozen=True, kw_only=True, tag="event.retracted"):
    target_event_id: EventId
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


AnyEvent: TypeAlias = (
    AlertFired
    | AlertResolved
    | IncidentDeclared
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
    | ActionItemAdded
    | ActionItemCompleted
    | EventCorrected
    | EventRetracted
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = typing.get_args(AnyEvent)


class SchemaError(ValueError):
    """An event that does not decode; the message names the field and the reason."""


# Field order sorted: one canonical byte form per event, which the hash chain covers.
_encoder: Final = msgspec.json.Encoder(order="sorted")
_decoder: Final[msgspec.json.Decoder[AnyEvent]] = msgspec.json.Decoder(AnyEvent)
_many_decoder: Final[msgspec.json.Decoder[list[AnyEvent]]] = msgspec.json.Decoder(list[AnyEvent])


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | str) -> AnyEvent:
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise SchemaError(str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"malformed JSON: {exc}") from exc


def decode_many(data: bytes | str) -> list[AnyEvent]:
    try:
        return _many_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise SchemaError(str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"malformed JSON: {exc}") from exc


def type_name(event: Event | type[Event]) -> str:
    cls = event if isinstance(event, type) else type(event)
    return str(cls.__struct_config__.tag)


TYPE_NAMES: Final[frozenset[str]] = frozenset(type_name(t) for t in EVENT_TYPES)


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
