"""The incident's state: `Incident`, and `evolve(state, event)` / `fold(events)` that build it.

Data flow: events read from the log are folded here into the state that `events.decisions`
judges commands against and the projector turns into read models. Pure: no clock, no ids, no
I/O. `evolve` is total: the log is truth, so applying a stored fact never refuses.
"""

from collections.abc import Iterable
from datetime import date, datetime
from functools import reduce
from typing import Any, Final, assert_never

import msgspec
from msgspec import Struct

from events.schema import (
    ActionItemAdded,
    ActionItemCompleted,
    AlertFired,
    AlertResolved,
    AnyEvent,
    Category,
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
    MitigationAction,
    MitigationCompleted,
    MitigationStarted,
    Outcome,
    Phase,
    PostmortemPublished,
    Role,
    Severity,
    Status,
)


class Mitigation(Struct, frozen=True, gc=False):
    mitigation_id: str
    action: MitigationAction
    target: str
    started_at: datetime
    outcome: Outcome | None = None
    completed_at: datetime | None = None


class ActionItem(Struct, frozen=True, gc=False):
    item_id: str
    title: str
    owner: str | None
    due: date | None
    done: bool = False


class Incident(Struct, frozen=True, gc=False):
    """What the log says about one incident, folded."""

    incident_id: str = ""
    declared: bool = False
    title: str = ""
    severity: Severity | None = None
    category: Category | None = None
    services: tuple[str, ...] = ()
    status: Status | None = None
    phase: Phase | None = None
    opened_at: datetime | None = None
    detected_at: datetime | None = None
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    roles: tuple[tuple[Role, str], ...] = ()
    escalation_level: int = 0
    mitigations: tuple[Mitigation, ...] = ()
    alerts_firing: frozenset[str] = frozenset()
    comms_count: int = 0
    last_comms_at: datetime | None = None
    next_update_at: datetime | None = None
    action_items: tuple[ActionItem, ...] = ()
    postmortem_published_at: datetime | None = None
    reopen_count: int = 0
    event_ids: frozenset[str] = frozenset()
    retracted: frozenset[str] = frozenset()
    version: int = 0

    @property
    def is_resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None

    def holder(self, role: Role) -> str | None:
        return next((person for held, person in self.roles if held is role), None)

    def mitigation(self, mitigation_id: str) -> Mitigation | None:
        return next((m for m in self.mitigations if m.mitigation_id == mitigation_id), None)

    def action_item(self, item_id: str) -> ActionItem | None:
        return next((a for a in self.action_items if a.item_id == item_id), None)


INITIAL: Final = Incident()


def _with(state: Incident, event: AnyEvent, **changes: Any) -> Incident:
    return msgspec.structs.replace(
        state,
        event_ids=state.event_ids | {event.event_id},
        version=state.version + 1,
        **changes,
    )


def evolve(state: Incident, event: AnyEvent) -> Incident:
    """Apply one stored fact. Total: the log is truth, so nothing here can refuse."""
    match event:
        case IncidentDeclared():
            return _with(
                state,
                event,
                incident_id=event.incident_id,
                declared=True,
                title=event.title,
                severity=event.severity,
                category=event.category,
                services=event.services,
                status=Status.INVESTIGATING,
                phase=Phase.DETECTED,
                opened_at=event.occurred_at,
                detected_at=event.detected_at,
            )
        case IncidentAcknowledged():
            return _with(state, event, acknowledged_at=state.acknowledged_at or event.occurred_at)
        case IncidentSeverityChanged():
            return _with(state, event, severity=event.to)
        case IncidentStatusChanged():
            return _with(state, event, status=event.status)
        case IncidentPhaseChanged():
            return _with(state, event, phase=event.phase)
        case IncidentRoleAssigned():
            others = tuple(pair for pair in state.roles if pair[0] is not event.role)
            return _with(state, event, roles=(*others, (event.role, event.person)))
        case IncidentRoleReleased():
            kept = tuple(pair for pair in state.roles if pair != (event.role, event.person))
            return _with(state, event, roles=kept)
        case IncidentEscalated():
            return _with(state, event, escalation_level=event.level)
        case MitigationStarted():
            started = Mitigation(event.mitigation_id, event.action, event.target, event.occurred_at)
            return _with(state, event, mitigations=(*state.mitigations, started))
        case MitigationCompleted():
            mitigations = tuple(
                msgspec.structs.replace(m, outcome=event.outcome, completed_at=event.occurred_at)
                if m.mitigation_id == event.mitigation_id
                else m
                for m in state.mitigations
            )
            mitigated_at = state.mitigated_at
            if event.outcome is Outcome.SUCCEEDED and mitigated_at is None:
                mitigated_at = event.occurred_at
            return _with(state, event, mitigations=mitigations, mitigated_at=mitigated_at)
        case CommsSent():
            return _with(
                state,
                event,
                comms_count=state.comms_count + 1,
                last_comms_at=event.occurred_at,
                next_update_at=event.next_update_at,
                status=event.status or state.status,
            )
        case AlertFired():
            return _with(state, event, alerts_firing=state.alerts_firing | {event.fingerprint})
        case AlertResolved():
            return _with(state, event, alerts_firing=state.alerts_firing - {event.fingerprint})
        case IncidentResolved():
            return _with(
                state,
                event,
                resolved_at=event.occurred_at,
                status=Status.RESOLVED,
                phase=Phase.RESOLVED,
                next_update_at=None,
            )
        case IncidentReopened():
            return _with(
                state,
                event,
                resolved_at=None,
                closed_at=None,
                status=Status.INVESTIGATING,
                phase=Phase.INVESTIGATION,
                reopen_count=state.reopen_count + 1,
            )
        case IncidentClosed():
            return _with(state, event, closed_at=event.occurred_at)
        case PostmortemPublished():
            return _with(
                state,
                event,
                postmortem_published_at=state.postmortem_published_at or event.occurred_at,
                phase=Phase.POSTMORTEM,
            )
        case ActionItemAdded():
            item = ActionItem(event.item_id, event.title, event.owner, event.due)
            return _with(state, event, action_items=(*state.action_items, item))
        case ActionItemCompleted():
            items = tuple(
                msgspec.structs.replace(a, done=True) if a.item_id == event.item_id else a
                for a in state.action_items
            )
            return _with(state, event, action_items=items)
        case EventRetracted():
            return _with(state, event, retracted=state.retracted | {event.target_event_id})
        case IncidentNoteAdded() | EvidenceAttached() | EventCorrected():
            return _with(state, event)
        case _:
            assert_never(event)


def fold(events: Iterable[AnyEvent], state: Incident = INITIAL) -> Incident:
    return reduce(evolve, events, state)
