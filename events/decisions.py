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
    Link,
    PublishPostmortem,
    Record,
    RecordAlertFired,
    RecordAlertResolved,
    ReleaseRole,
    Reopen,
    Resolve,
    RetractEvent,
    ReviewPostmortem,
    SendComms,
    StartActionItem,
    StartMitigation,
    UpdateImpact,
)
from events.facts import DECLARED, last_turn
from events.incident import Incident, evolve, fold
from events.schema import (
    MAX_ESCALATION_LEVEL,
    MAX_TEXT,
    ActionItemAdded,
    ActionItemCompleted,
    ActionItemStarted,
    ActionStatus,
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
    IncidentImpactUpdated,
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
    NotificationSent,
    Phase,
    PostmortemPublished,
    PostmortemReviewed,
    Role,
    Severity,
    Status,
    type_name,
)
from events.vocabulary import SEVERITY_ORDER

# The actor of a resolution the alerts made: all of an alert-opened incident's alerts resolved.
AUTO_RESOLVE = "auto-resolve"


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


def _before_turn(state: Incident, event: AnyEvent) -> Rejected | None:
    """A resolve or reopen dated before the latest one would change nothing (the latest in
    effective time decides), and a retry of it would be taken again: refused."""
    turn = last_turn(state.facts)
    if turn is not None and event.occurred_at < turn.at:
        return Rejected(
            f"{type_name(event)} at {event.occurred_at.isoformat()} is dated before the "
            f"incident's latest {turn.kind} at {turn.at.isoformat()}",
            RejectionKind.INVALID,
        )
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
            # A closed incident is final: an alert that ends after it changes nothing there.
            if event.fingerprint not in state.alerts_firing or state.is_closed:
                return []
            refusal = None
        case IncidentResolved():
            if state.is_resolved:
                return []
            refusal = _closed(state) or _before_turn(state, event)
        case IncidentReopened():
            if state.is_closed:
                return Rejected(
                    f"incident {state.incident_id} is closed and final; declare a new incident"
                )
            if not state.is_resolved:
                return Rejected(f"incident {state.incident_id} is not resolved")
            refusal = _before_turn(state, event)
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
        case ActionItemStarted():
            item = state.action_item(event.item_id)
            if item is None:
                return Rejected(
                    f"action item {event.item_id} does not exist", RejectionKind.NOT_FOUND
                )
            if item.status is not ActionStatus.TODO:  # started or done already: nothing to do
                return []
            refusal = None
        case PostmortemReviewed():
            if state.postmortem_published_at is None:
                return Rejected("publish the postmortem before recording its review")
            refusal = None
        case NotificationSent():
            refusal = None  # a record of what the notifier delivered: a fact, never refused
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
            if isinstance(event, EventCorrected):
                refusal = _correction_problem(event, state)
                if refusal is not None:
                    return refusal
            # Amendments change the lifecycle (a retracted resolution un-resolves), but a closed
            # incident is final: it stays resolved.
            after = evolve(state, event)
            if after.is_closed and not after.is_resolved:
                return Rejected(
                    f"incident {state.incident_id} is closed and final: this would leave it "
                    "unresolved"
                )
            refusal = None
        case IncidentImpactUpdated():
            refusal = _closed(state)
        case IncidentNoteAdded() | EvidenceAttached():
            refusal = None
        case IncidentDeclared():
            raise AssertionError("handled above")
        case _:
            assert_never(event)
    return refusal if refusal is not None else [event]


def _correction_problem(event: EventCorrected, state: Incident) -> Rejected | None:
    declaration_fields = event.corrected_detected_at or event.corrected_impact_started_at
    if not (
        event.corrected_occurred_at
        or event.corrected_text
        or event.corrected_actor
        or declaration_fields
    ):
        return Rejected("a correction must correct something", RejectionKind.INVALID)
    declarations = {f.event_id for f in state.facts if f.kind == DECLARED}
    if declaration_fields and event.target_event_id not in declarations:
        return Rejected(
            "corrected_detected_at and corrected_impact_started_at correct the declaration "
            f"({', '.join(sorted(declarations))})",
            RejectionKind.INVALID,
        )
    return None


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


def more_severe(severity: Severity, than: Severity) -> bool:
    return SEVERITY_ORDER.index(severity) < SEVERITY_ORDER.index(than)


def _evidence(command: RecordAlertFired, state: Incident, first: int) -> list[AnyEvent]:
    """The alert's links not yet attached, as evidence (ids `<event id>/<n>` from `first`)."""
    fresh: list[Link] = list({k.uri: k for k in command.links if k.uri not in state.links}.values())
    return [
        _event(
            EvidenceAttached,
            command,
            event_id=f"{command.event_id}/{first + n}",
            causation_id=command.event_id,
            kind=link.kind,
            uri=link.uri,
            description=link.description,
        )
        for n, link in enumerate(fresh)
    ]


def _alert_fired(command: RecordAlertFired, state: Incident) -> Decision:
    """The alert, then what it brings: a higher severity (never lower), its links as evidence."""
    alert = admit(_event(AlertFired, command), state)
    if isinstance(alert, Rejected):
        return alert
    events: list[AnyEvent] = list(alert)
    to, current = command.raise_to, state.severity
    if to is not None and current is not None and more_severe(to, current):
        label = f" (severity {command.severity})" if command.severity else ""
        events.append(
            _event(
                IncidentSeverityChanged,
                command,
                event_id=f"{command.event_id}/1",
                causation_id=command.event_id,
                from_=current,
                to=to,
                reason=f"alert {command.alertname or command.fingerprint}{label} is {to}"[
                    :MAX_TEXT
                ],
            )
        )
    if events:
        events.extend(_evidence(command, state, 2))
    return _admit_all(events, state)


def resolves_itself(state: Incident, severities: Container[Severity]) -> bool:
    """Whether an incident is resolved by its alerts: opened by them, never taken over by a
    person, none firing any more, and the policy says so for its severity."""
    return (
        state.alert_opened
        and not state.taken_over
        and not state.alerts_firing
        and not state.is_resolved
        and state.severity is not None
        and state.severity in severities
    )


def _alert_resolved(command: RecordAlertResolved, state: Incident) -> Decision:
    alert = admit(_event(AlertResolved, command), state)
    if isinstance(alert, Rejected) or not alert:
        return alert
    if not resolves_itself(fold(alert, state), command.auto_resolve):
        return alert
    names = ", ".join(state.alert_names) or command.fingerprint
    resolution = _event(
        IncidentResolved,
        command,
        event_id=f"{command.event_id}/1",
        causation_id=command.event_id,
        actor=AUTO_RESOLVE,
        summary=f"All alerts resolved: {names}"[:MAX_TEXT],
    )
    return _admit_all([*alert, resolution], state)


def _escalate(command: Escalate, state: Incident) -> Decision:
    """The level: the command's, else the next one of the incident's path that can still fall
    due, else one above the current one (so a plain escalation never lowers it). The target:
    the command's, else the one the path names for that level; none there is a conflict."""
    if not state.declared or state.severity is None:
        return _missing(command.incident_id)
    refusal = _open(state, "escalate")
    if refusal is not None:
        return refusal
    policy, severity, current = command.escalation, state.severity, state.escalation_level
    acknowledged = state.acknowledged_at is not None
    level = command.level or policy.next_level(severity, current, acknowledged) or current + 1
    to = command.to
    if to is None:
        step = policy.level(severity, level)
        if step is None:
            return Rejected(_no_target(state, severity, level, len(policy.path(severity))))
        to = step.to
    return admit(_event(IncidentEscalated, command, level=level, to=to), state)


def _no_target(state: Incident, severity: Severity, level: int, levels: int) -> str:
    if levels == 0:
        where = f"the policy has no escalation path for {severity}"
    elif level == state.escalation_level + 1:
        where = (
            f"incident {state.incident_id} is at escalation level {state.escalation_level}, "
            f"the top of the {severity} escalation path"
        )
    else:
        where = f"the {severity} escalation path ends at level {levels}, below level {level}"
    return f"{where}: say whom to escalate to (`to`)"


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
        case UpdateImpact():
            return admit(_event(IncidentImpactUpdated, command), state)
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
            return _escalate(command, state)
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
        case StartActionItem():
            return admit(_event(ActionItemStarted, command), state)
        case ReviewPostmortem():
            return admit(_event(PostmortemReviewed, command), state)
        case CompleteActionItem():
            return admit(_event(ActionItemCompleted, command), state)
        case RecordAlertFired():
            return _alert_fired(command, state)
        case RecordAlertResolved():
            return _alert_resolved(command, state)
        case CorrectEvent():
            return admit(_event(EventCorrected, command), state, known)
        case RetractEvent():
            return admit(_event(EventRetracted, command), state, known)
        case _:
            assert_never(command)
