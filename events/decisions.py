"""Decisions on the incident: `decide(command, state)` turns a command into events or `Rejected`.

Data flow: the log's events are folded into an `Incident` (`events.incident`), commands are
judged here against that state, and the admitted events go to the store. Pure: no clock, no ids,
no I/O; time and ids arrive inside commands. Lifecycle rules live in `admit`, which judges a
candidate event against the state, so commands built here and events recorded by producers
(`Record`) obey the same rules. A no-op is `[]`, never an event.
"""

import enum
from collections.abc import Container
from typing import Any, assert_never

from msgspec import Struct

from events.commands import (
    Acknowledge,
    AddActionItem,
    AddNote,
    AnyCommand,
    AssignRole,
    AttachEvidence,
    ChangePhase,
    ChangeSeverity,
    ChangeStatus,
    Close,
    Command,
    CompleteActionItem,
    CompleteMitigation,
    CorrectEvent,
    Declare,
    Escalate,
    PublishPostmortem,
    Record,
    RecordAlertFired,
    RecordAlertResolved,
    ReleaseRole,
    Reopen,
    Resolve,
    RetractEvent,
    SendComms,
    StartMitigation,
)
from events.incident import Incident, evolve, fold
from events.schema import (
    MAX_ESCALATION_LEVEL,
    ActionItemAdded,
    ActionItemCompleted,
    AlertFired,
    AlertResolved,
    AnyEvent,
    CommsSent,
    EventCorrected,
    EventRetracted,
    EvidenceAttached,
    IncidentAcknowledged,
    IncidentClosed,
    IncidentDeclared,
    IncidentEscalated,
    IncidentNoteAdded,
    IncidentPhaseChanged,
    IncidentReopened,
    IncidentResolved,
    IncidentRoleAssigned,
    IncidentRoleReleased,
    IncidentSeverityChanged,
    IncidentStatusChanged,
    MitigationCompleted,
    MitigationStarted,
    Phase,
    PostmortemPublished,
    Role,
    Status,
)


class RejectionKind(enum.StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"


class Rejected(Struct, frozen=True):
    reason: str
    kind: RejectionKind = RejectionKind.CONFLICT


Decision = list[AnyEvent] | Rejected


def _closed(state: Incident) -> Rejected | None:
    if state.is_closed:
        return Rejected(f"incident {state.incident_id} is closed")
    return None


def _open(state: Incident, what: str) -> Rejected | None:
    """Refuse work that only makes sense while the incident is being handled."""
    if state.is_closed:  # final: reopening is refused too, so never suggest it
        return Rejected(
            f"cannot {what}: incident {state.incident_id} is closed and final; "
            "declare a new incident"
        )
    if state.is_resolved:
        return Rejected(f"cannot {what}: incident {state.incident_id} is resolved; reopen it first")
    return None


def _missing(incident_id: str) -> Rejected:
    return Rejected(f"incident {incident_id} does not exist", RejectionKind.NOT_FOUND)


def admit(event: AnyEvent, state: Incident, known: Container[str] | None = None) -> Decision:
    """Judge one candidate event against the lifecycle rules.

    The state keeps no ids of past events (the fold would copy them at every event): a retried
    command (same event id) is answered from the log by the write path before it gets here, and
    `known`, the ids of the incident's events when the caller has its log, lets a correction or
    retraction of an event that is not there be refused. Without it, such an amendment is
    accepted and changes nothing.
    """
    if state.declared and event.incident_id != state.incident_id:
        return Rejected(
            f"event for {event.incident_id} judged against {state.incident_id}",
            RejectionKind.INVALID,
        )
    if isinstance(event, IncidentDeclared):
        if state.declared:
            return Rejected(f"incident {event.incident_id} is already declared")
        return [event]
    if not state.declared:
        return _missing(event.incident_id)
    refusal: Rejected | None
    match event:
        case IncidentAcknowledged():
            if state.acknowledged_at is not None:
                return []
            refusal = _open(state, "acknowledge")
        case IncidentSeverityChanged():
            if event.to is state.severity:
                return Rejected(f"severity is already {event.to}")
            if event.from_ is not state.severity:
                return Rejected(
                    f"from is {event.from_} but the incident is {state.severity}",
                    RejectionKind.INVALID,
                )
            refusal = _closed(state)
        case IncidentStatusChanged():
            if event.status is Status.RESOLVED:
                return Rejected(
                    "resolve the incident to set status resolved", RejectionKind.INVALID
                )
            if event.status is state.status:
                return []
            refusal = _open(state, "change status")
        case IncidentPhaseChanged():
            if event.phase is Phase.RESOLVED:
                return Rejected(
                    "resolve the incident to enter phase resolved", RejectionKind.INVALID
                )
            if event.phase is state.phase:
                return []
            if event.phase is Phase.POSTMORTEM:
                refusal = None if state.is_resolved else Rejected("resolve the incident first")
            else:
                refusal = _open(state, f"enter phase {event.phase}")
        case IncidentRoleAssigned():
            if state.holder(event.role) == event.person:
                return []
            refusal = _closed(state)
        case IncidentRoleReleased():
            if state.holder(event.role) != event.person:
                return Rejected(f"{event.person} does not hold role {event.role}")
            refusal = _closed(state)
        case IncidentEscalated():
            refusal = _open(state, "escalate")
            if refusal is None and event.level < state.escalation_level:
                return Rejected(
                    f"incident {state.incident_id} is at escalation level "
                    f"{state.escalation_level}; an escalation never lowers it"
                )
            if refusal is None and event.level > MAX_ESCALATION_LEVEL:  # one up from the top
                return Rejected(
                    f"incident {state.incident_id} is already at the highest escalation level"
                )
        case MitigationStarted():
            if state.mitigation(event.mitigation_id) is not None:
                return Rejected(f"mitigation {event.mitigation_id} already exists")
            refusal = _open(state, "start a mitigation")
        case MitigationCompleted():
            mitigation = state.mitigation(event.mitigation_id)
            if mitigation is None:
                return Rejected(
                    f"mitigation {event.mitigation_id} was never started", RejectionKind.NOT_FOUND
                )
            if mitigation.outcome is event.outcome:
                return []
            if mitigation.outcome is not None:
                return Rejected(
                    f"mitigation {event.mitigation_id} already completed: {mitigation.outcome}"
                )
            refusal = _closed(state)
        case CommsSent():
            if event.status is Status.RESOLVED and not state.is_resolved:
                return Rejected(
                    "comms may announce status resolved only once the incident is resolved",
                    RejectionKind.INVALID,
                )
            # A resolution notice after resolving is normal; only a closed incident is final.
            refusal = _closed(state)
        case AlertFired():
            # A resolved incident takes no new firing alerts: correlation opens a new one.
            refusal = _open(state, "record a firing alert")
            if refusal is None and event.fingerprint in state.alerts_firing:
                return []
        case AlertResolved():
            if event.fingerprint not in state.alerts_firing:
                return []
            refusal = None
        case IncidentResolved():
            if state.is_resolved:
                return []
            refusal = _closed(state)
        case IncidentReopened():
            if state.is_closed:
                return Rejected(
                    f"incident {state.incident_id} is closed and final; declare a new incident"
                )
            if not state.is_resolved:
                return Rejected(f"incident {state.incident_id} is not resolved")
            refusal = None
        case IncidentClosed():
            if state.is_closed:
                return []
            if not state.is_resolved:
                return Rejected(f"resolve incident {state.incident_id} before closing it")
            refusal = None
        case PostmortemPublished():
            if not state.is_resolved:
                return Rejected("a postmortem is published after the incident is resolved")
            if event.uri is None and event.markdown is None:
                return Rejected("a postmortem needs a uri or markdown", RejectionKind.INVALID)
            refusal = None
        case ActionItemAdded():
            if state.action_item(event.item_id) is not None:
                return Rejected(f"action item {event.item_id} already exists")
            refusal = None
        case ActionItemCompleted():
            item = state.action_item(event.item_id)
            if item is None:
                return Rejected(
                    f"action item {event.item_id} does not exist", RejectionKind.NOT_FOUND
                )
            if item.done:
                return []
            refusal = None
        case EventCorrected() | EventRetracted():
            if event.target_event_id == event.event_id:
                return Rejected("an event cannot amend itself", RejectionKind.INVALID)
            if known is not None and event.target_event_id not in known:
                return Rejected(
                    f"event {event.target_event_id} is not part of incident {state.incident_id}",
                    RejectionKind.NOT_FOUND,
                )
            if isinstance(event, EventRetracted) and event.target_event_id in state.retracted:
                return []
            if isinstance(event, EventCorrected) and not (
                event.corrected_occurred_at or event.corrected_text or event.corrected_actor
            ):
                return Rejected("a correction must correct something", RejectionKind.INVALID)
            # Amendments change the lifecycle (a retracted resolution un-resolves), but a closed
            # incident is final: it stays resolved.
            after = evolve(state, event)
            if after.is_closed and not after.is_resolved:
                return Rejected(
                    f"incident {state.incident_id} is closed and final: this would leave it "
                    "unresolved"
                )
            refusal = None
        case IncidentNoteAdded() | EvidenceAttached():
            refusal = None
        case IncidentDeclared():
            raise AssertionError("handled above")
        case _:
            assert_never(event)
    return refusal if refusal is not None else [event]


def _event(cls: type[AnyEvent], command: Command, **extra: Any) -> AnyEvent:
    """Build the candidate event from the command's fields of the same names."""
    fields = {
        name: getattr(command, name)
        for name in command.__struct_fields__
        if name in cls.__struct_fields__
    }
    return cls(**(fields | extra))


def _admit_all(candidates: list[AnyEvent], state: Incident) -> Decision:
    """Admit several events as one decision, each judged on the state the previous ones make."""
    admitted: list[AnyEvent] = []
    for candidate in candidates:
        decision = admit(candidate, state)
        if isinstance(decision, Rejected):
            return decision
        admitted.extend(decision)
        state = fold(decision, state)
    return admitted


def decide(command: AnyCommand, state: Incident, known: Container[str] | None = None) -> Decision:
    """`known`: the ids of the incident's events, to refuse amendments of others (see `admit`)."""
    match command:
        case Record():
            return admit(command.event, state, known)
        case Declare():
            declared = _event(IncidentDeclared, command)
            if command.commander is None:
                return admit(declared, state)
            commander = _event(
                IncidentRoleAssigned,
                command,
                # The explicit link a retry of the declaration finds its second event by.
                event_id=f"{command.event_id}/1",
                causation_id=command.event_id,
                role=Role.COMMANDER,
                person=command.commander,
            )
            return _admit_all([declared, commander], state)
        case Acknowledge():
            return admit(_event(IncidentAcknowledged, command), state)
        case ChangeSeverity():
            if state.severity is None:
                return _missing(command.incident_id)
            return admit(_event(IncidentSeverityChanged, command, from_=state.severity), state)
        case ChangeStatus():
            return admit(_event(IncidentStatusChanged, command), state)
        case ChangePhase():
            return admit(_event(IncidentPhaseChanged, command), state)
        case AssignRole():
            return admit(_event(IncidentRoleAssigned, command), state)
        case ReleaseRole():
            return admit(_event(IncidentRoleReleased, command), state)
        case Escalate():
            # No level: one above the current one, so a plain escalation never lowers it.
            level = command.level or state.escalation_level + 1
            return admit(_event(IncidentEscalated, command, level=level), state)
        case StartMitigation():
            return admit(_event(MitigationStarted, command), state)
        case CompleteMitigation():
            return admit(_event(MitigationCompleted, command), state)
        case SendComms():
            return admit(_event(CommsSent, command), state)
        case AddNote():
            return admit(_event(IncidentNoteAdded, command), state)
        case AttachEvidence():
            return admit(_event(EvidenceAttached, command), state)
        case Resolve():
            return admit(_event(IncidentResolved, command), state)
        case Reopen():
            return admit(_event(IncidentReopened, command), state)
        case Close():
            return admit(_event(IncidentClosed, command), state)
        case PublishPostmortem():
            return admit(_event(PostmortemPublished, command), state)
        case AddActionItem():
            return admit(_event(ActionItemAdded, command), state)
        case CompleteActionItem():
            return admit(_event(ActionItemCompleted, command), state)
        case RecordAlertFired():
            return admit(_event(AlertFired, command), state)
        case RecordAlertResolved():
            return admit(_event(AlertResolved, command), state)
        case CorrectEvent():
            return admit(_event(EventCorrected, command), state, known)
        case RetractEvent():
            return admit(_event(EventRetracted, command), state, known)
        case _:
            assert_never(command)
