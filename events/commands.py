"""What people and tools ask of an incident: imperative, strict command Structs.

Commands carry everything `decide` needs besides the incident's state: the event id (the
idempotency key), the time and the actor, so deciding stays pure. Unknown fields are refused.
"""

from datetime import date, datetime
from typing import Annotated, TypeAlias

from msgspec import Meta, Struct

from events.escalation import NO_ESCALATION, EscalationPolicy
from events.schema import (
    MAX_ESCALATION_LEVEL,
    AnyEvent,
    Audience,
    Category,
    Channel,
    CommsKind,
    EvidenceKind,
    Hex,
    Impact,
    IncidentId,
    Labels,
    MitigationAction,
    Name,
    NoteKind,
    Outcome,
    Phase,
    PostmortemStatus,
    Principal,
    Role,
    Severity,
    Short,
    Source,
    SpanId,
    Status,
    Text,
    Title,
    TraceId,
    Uri,
    UtcDatetime,
)

# No "/" so that ids derived for the 2nd, 3rd... event of one decision ("<id>/1") never collide.
CommandEventId: TypeAlias = Annotated[str, Meta(pattern=r"^[!-.0-~]{1,120}\Z")]
NonEmptyText: TypeAlias = Annotated[str, Meta(min_length=1, max_length=16 * 1024)]


class Command(
    Struct, frozen=True, kw_only=True, tag_field="command", forbid_unknown_fields=True, gc=False
):
    incident_id: IncidentId
    event_id: CommandEventId
    occurred_at: UtcDatetime
    actor: Name
    source: Source
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    correlation_id: Short | None = None
    causation_id: Short | None = None
    # Who was authenticated: set by intake, never taken from a client's body (`bodies`).
    principal: Principal | None = None


class Declare(Command, frozen=True, kw_only=True, tag="declare"):
    title: Title
    severity: Severity
    category: Category = Category.APPLICATION
    services: tuple[Name, ...] = ()
    summary: Text = ""
    detected_at: UtcDatetime | None = None
    impact_started_at: UtcDatetime | None = None
    impact: Impact | None = None
    commander: Name | None = None


class Acknowledge(Command, frozen=True, kw_only=True, tag="acknowledge"):
    pass


class ChangeSeverity(Command, frozen=True, kw_only=True, tag="change_severity"):
    to: Severity
    reason: Text = ""


class UpdateImpact(Command, frozen=True, kw_only=True, tag="update_impact"):
    impact: Impact


class ChangeStatus(Command, frozen=True, kw_only=True, tag="change_status"):
    status: Status


class ChangePhase(Command, frozen=True, kw_only=True, tag="change_phase"):
    phase: Phase


class AssignRole(Command, frozen=True, kw_only=True, tag="assign_role"):
    role: Role
    person: Name


class ReleaseRole(Command, frozen=True, kw_only=True, tag="release_role"):
    role: Role
    person: Name


class Escalate(Command, frozen=True, kw_only=True, tag="escalate"):
    # None: the next level of the incident's escalation path that can still fall due, else one
    # above the current level (`decide`).
    level: Annotated[int, Meta(ge=1, le=MAX_ESCALATION_LEVEL)] | None = None
    # None: the target the path names for that level.
    to: Name | None = None
    reason: Text = ""
    # The policy's escalation paths, set by the service (never by a client): decide picks the
    # incident's severity's path, as `RecordAlertResolved.auto_resolve` carries policy data.
    escalation: EscalationPolicy = NO_ESCALATION


class StartMitigation(Command, frozen=True, kw_only=True, tag="start_mitigation"):
    mitigation_id: Name
    action: MitigationAction
    target: Short = ""
    automated: bool = False
    confidence: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None


class CompleteMitigation(Command, frozen=True, kw_only=True, tag="complete_mitigation"):
    mitigation_id: Name
    outcome: Outcome
    details: Text = ""


class SendComms(Command, frozen=True, kw_only=True, tag="send_comms"):
    audience: Audience
    kind: CommsKind
    message: NonEmptyText
    status: Status | None = None
    next_update_at: UtcDatetime | None = None
    channel: Channel | None = None
    template: Name | None = None


class AddNote(Command, frozen=True, kw_only=True, tag="add_note"):
    text: NonEmptyText
    kind: NoteKind = NoteKind.NOTE


class AttachEvidence(Command, frozen=True, kw_only=True, tag="attach_evidence"):
    kind: EvidenceKind
    uri: Uri
    sha256: Hex | None = None
    description: Text = ""


class Resolve(Command, frozen=True, kw_only=True, tag="resolve"):
    summary: Text = ""


class Reopen(Command, frozen=True, kw_only=True, tag="reopen"):
    reason: Text = ""


class Close(Command, frozen=True, kw_only=True, tag="close"):
    reason: Text = ""


class PublishPostmortem(Command, frozen=True, kw_only=True, tag="publish_postmortem"):
    uri: Uri | None = None
    markdown: Annotated[str, Meta(max_length=48 * 1024)] | None = None
    summary: Text = ""
    authors: tuple[Name, ...] = ()
    status: PostmortemStatus = PostmortemStatus.FINAL


class ReviewPostmortem(Command, frozen=True, kw_only=True, tag="review_postmortem"):
    held_at: UtcDatetime
    attendees: tuple[Name, ...] = ()
    summary: Text = ""


class AddActionItem(Command, frozen=True, kw_only=True, tag="add_action_item"):
    item_id: Name
    title: Title
    owner: Name | None = None
    due: date | None = None
    priority: Severity | None = None
    ticket_url: Uri | None = None


class StartActionItem(Command, frozen=True, kw_only=True, tag="start_action_item"):
    item_id: Name


class CompleteActionItem(Command, frozen=True, kw_only=True, tag="complete_action_item"):
    item_id: Name


class Link(Struct, frozen=True, kw_only=True, gc=False):
    """A link a monitor sent with an alert; kept as evidence when the alert joins an incident."""

    uri: Uri
    kind: EvidenceKind = EvidenceKind.LINK
    description: Text = ""


class _AlertCommand(Command, frozen=True, kw_only=True):
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
    truncated_alerts: Annotated[int, Meta(ge=0)] = 0
    links: tuple[Link, ...] = ()  # attached as evidence, each uri once per incident


class RecordAlertFired(_AlertCommand, frozen=True, kw_only=True, tag="record_alert_fired"):
    # The severity the alert's labels map to: an open incident of a lower one is raised to it.
    raise_to: Severity | None = None


class RecordAlertResolved(_AlertCommand, frozen=True, kw_only=True, tag="record_alert_resolved"):
    # Severities at which an incident opened by alerts resolves itself once they all have
    # (the policy's `auto_resolve`); empty: never.
    auto_resolve: frozenset[Severity] = frozenset()


class CorrectEvent(Command, frozen=True, kw_only=True, tag="correct_event"):
    target_event_id: Annotated[str, Meta(pattern=r"^[!-~]{1,128}\Z")]
    corrected_occurred_at: UtcDatetime | None = None
    corrected_text: Text | None = None
    corrected_actor: Name | None = None
    corrected_detected_at: UtcDatetime | None = None
    corrected_impact_started_at: UtcDatetime | None = None
    reason: NonEmptyText


class RetractEvent(Command, frozen=True, kw_only=True, tag="retract_event"):
    target_event_id: Annotated[str, Meta(pattern=r"^[!-~]{1,128}\Z")]
    reason: NonEmptyText


class Record(Struct, frozen=True, gc=False, tag="record", tag_field="command"):
    """Append a producer-built event (POST /v1/events, NATS intake) under the same rules."""

    event: AnyEvent


AnyCommand: TypeAlias = (
    Declare
    | UpdateImpact
    | Acknowledge
    | ChangeSeverity
    | ChangeStatus
    | ChangePhase
    | AssignRole
    | ReleaseRole
    | Escalate
    | StartMitigation
    | CompleteMitigation
    | SendComms
    | AddNote
    | AttachEvidence
    | Resolve
    | Reopen
    | Close
    | PublishPostmortem
    | ReviewPostmortem
    | AddActionItem
    | StartActionItem
    | CompleteActionItem
    | RecordAlertFired
    | RecordAlertResolved
    | CorrectEvent
    | RetractEvent
    | Record
)


def target_incident(command: AnyCommand) -> str:
    return command.event.incident_id if isinstance(command, Record) else command.incident_id


def command_event_id(command: AnyCommand) -> str:
    return command.event.event_id if isinstance(command, Record) else command.event_id


def command_time(command: AnyCommand) -> datetime:
    """When the command says its fact happened (`occurred_at`)."""
    return command.event.occurred_at if isinstance(command, Record) else command.occurred_at
