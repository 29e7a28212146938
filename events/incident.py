"""The incident's state: `Incident`, and `evolve(state, event)` / `fold(events)` that build it.

Data flow: events read from the log are folded here into the state that `events.decisions`
judges commands against and the projector turns into read models. Pure: no clock, no ids, no
I/O. `evolve` is total: the log is truth, so applying a stored fact never refuses.

Corrections and retractions change the state (`events.facts` keeps what they may amend), so
the board, `decide`, the metrics and the breaches tell one story. The state holds no set of
seen event ids: `fold` is linear in the events. A lifecycle event moves the lifecycle fields in
constant time (`_advanced`); an amendment settles them again from all the facts (`_settle`).
"""

from collections.abc import Callable, Iterable
from datetime import date, datetime
from functools import reduce
from typing import Any, Final, assert_never

import msgspec
from msgspec import Struct

from events.facts import (
    ACKNOWLEDGED,
    CLOSED,
    DECLARED,
    DETECTED_AT,
    IMPACT_STARTED_AT,
    MITIGATED,
    POSTMORTEM,
    REOPENED,
    RESOLVED,
    REVIEWED,
    Fact,
    Runs,
    appended,
    changed,
    facts_of,
    last_turn,
    promise,
)
from events.schema import (
    MONITORS,
    ActionItemAdded,
    ActionItemCompleted,
    ActionItemStarted,
    ActionStatus,
    AlertFired,
    AlertResolved,
    AnyEvent,
    Category,
    CommsSent,
    EventCorrected,
    EventRetracted,
    EvidenceAttached,
    Impact,
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
    MitigationAction,
    MitigationCompleted,
    MitigationStarted,
    NotificationSent,
    Outcome,
    Phase,
    PostmortemPublished,
    PostmortemReviewed,
    PostmortemStatus,
    Role,
    Severity,
    Status,
    type_name,
)


class Mitigation(Struct, frozen=True, gc=False):
    mitigation_id: str
    action: MitigationAction
    target: str
    started_at: datetime
    outcome: Outcome | None = None
    completed_at: datetime | None = None
    automated: bool = False  # started by automation (runbook 001's auto-remediation)
    event_id: str = ""  # its mitigation.started (retractable)


class ActionItem(Struct, frozen=True, gc=False):
    item_id: str
    title: str
    owner: str | None
    due: date | None
    status: ActionStatus = ActionStatus.TODO
    priority: Severity | None = None
    ticket_url: str | None = None

    @property
    def done(self) -> bool:
        return self.status is ActionStatus.DONE


class Incident(Struct, frozen=True, gc=False):
    """What the log says about one incident, folded.

    The lifecycle times (`opened_at`, `acknowledged_at`, `mitigated_at`, `resolved_at`,
    `closed_at`, `postmortem_published_at`, comms) follow the metrics' rules: effective
    (corrected) times, retracted events taken back, the latest resolve or reopen in effective
    time decides whether it is resolved. `status` is resolved while resolved, else the status
    last set (`open_status`); `phase` likewise.
    """

    incident_id: str = ""
    declared: bool = False
    title: str = ""
    severity: Severity | None = None
    category: Category | None = None
    services: tuple[str, ...] = ()
    status: Status | None = None
    phase: Phase | None = None
    opened_at: datetime | None = None
    # Detection (definitions 2): the earliest of the first alert's start, the declaration's
    # detected_at and the declaration; every response clock starts here.
    detected_at: datetime | None = None
    impact_started_at: datetime | None = None  # the declaration's, as corrected: users first hit
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    roles: tuple[tuple[Role, str], ...] = ()
    escalation_level: int = 0
    mitigations: tuple[Mitigation, ...] = ()
    alerts_firing: frozenset[str] = frozenset()
    alert_names: tuple[str, ...] = ()  # distinct alertnames that fired, in order
    alerts_truncated: int = 0  # the most alerts one delivery said it left out
    alert_starts: Runs = ()  # each firing's start, for detection (retractable)
    alert_opened: bool = False  # declared by a monitor (`MONITORS`)
    # A person took it over: named a commander or set status or phase. Never resolved by alerts.
    taken_over: bool = False
    impacts: tuple[tuple[str, Impact], ...] = ()  # (event id, impact) statements, log order
    links: frozenset[str] = frozenset()  # evidence URIs attached
    comms_count: int = 0
    first_comms_at: datetime | None = None
    last_comms_at: datetime | None = None
    next_update_at: datetime | None = None
    action_items: tuple[ActionItem, ...] = ()
    postmortem_published_at: datetime | None = None
    postmortem_status: PostmortemStatus | None = None  # the latest publication's
    postmortem_authors: tuple[str, ...] = ()
    postmortem_reviewed_at: datetime | None = None  # the first review meeting held
    reopen_count: int = 0
    open_status: Status | None = None  # the status while unresolved
    open_phase: Phase | None = None  # the phase while unresolved
    resolved_phase: Phase | None = None  # the phase while resolved
    facts: tuple[Fact, ...] = ()  # lifecycle events but comms, in log order: a few
    comms: Runs = ()  # comms, in log order: as many as updates were sent
    retracted: frozenset[str] = frozenset()  # ids of retracted events
    version: int = 0  # events folded

    @property
    def is_resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None

    @property
    def declared_at(self) -> datetime | None:
        """When it was declared, None when its declaration was retracted (metrics skip it)."""
        for f in self.facts:  # a loop, not a generator: read for every row the projector writes
            if f.kind == DECLARED and not f.retracted:
                return f.at
        return None

    @property
    def impact(self) -> Impact | None:
        """The latest impact statement not retracted."""
        return next((i for e, i in reversed(self.impacts) if e not in self.retracted), None)

    @property
    def board_status(self) -> str:
        """The status people see: the public status, or `closed` once closed (final)."""
        if self.is_closed:
            return "closed"
        return self.status.value if self.status else ""

    @property
    def automation(self) -> tuple[bool, bool, bool]:
        """(an automated mitigation started, one succeeded, the first success - the one MTTM
        ends at - was automated): the automation share's facts."""
        if not any(m.automated for m in self.mitigations):
            return False, False, False  # by hand: the common case, read for every row
        live = [m for m in self.mitigations if m.event_id not in self.retracted]
        started = any(m.automated for m in live)
        succeeded = any(m.automated and m.outcome is Outcome.SUCCEEDED for m in live)
        firsts = [
            f
            for f in self.facts
            if f.kind == MITIGATED and not f.retracted and f.outcome is Outcome.SUCCEEDED
        ]
        first = min(firsts, key=lambda f: f.key, default=None)
        mitigation = self.mitigation(first.mitigation_id or "") if first else None
        automated = mitigation is not None and mitigation.event_id not in self.retracted
        return started, succeeded, automated and mitigation is not None and mitigation.automated

    def holder(self, role: Role) -> str | None:
        return next((person for held, person in self.roles if held is role), None)

    def mitigation(self, mitigation_id: str) -> Mitigation | None:
        return next((m for m in self.mitigations if m.mitigation_id == mitigation_id), None)

    def action_item(self, item_id: str) -> ActionItem | None:
        return next((a for a in self.action_items if a.item_id == item_id), None)


INITIAL: Final = Incident()


def _with(state: Incident, **changes: Any) -> Incident:
    return msgspec.structs.replace(state, version=state.version + 1, **changes)


def _fact(state: Incident, event: AnyEvent, **extra: Any) -> Fact:
    return Fact(event.event_id, type_name(event), state.version, event.occurred_at, **extra)


def _shown(state: Incident) -> Incident:
    """Status and phase as shown: resolved ones while resolved, else the open ones."""
    status: Status | None
    phase: Phase | None
    if state.is_resolved:
        status, phase = Status.RESOLVED, state.resolved_phase or Phase.RESOLVED
    else:
        status, phase = state.open_status, state.open_phase
    if (status, phase) == (state.status, state.phase):
        return state
    return msgspec.structs.replace(state, status=status, phase=phase)


def _settle(state: Incident) -> Incident:
    """Every lifecycle field again from the facts, after an amendment of a lifecycle fact or
    comms, or a lifecycle event `_advanced` cannot take in: O(facts + comms)."""
    live = [f for f in state.facts if not f.retracted]

    def first(kind: str) -> datetime | None:
        return min((f.at for f in live if f.kind == kind), default=None)

    turn = last_turn(state.facts)
    resolved_at = None
    if turn is not None and turn.kind == RESOLVED:
        resolved_at = max(f.at for f in live if f.kind == RESOLVED)
    declarations = [f for f in state.facts if f.kind == DECLARED]
    opened = [f for f in declarations if not f.retracted] or declarations
    declaration = opened[0] if opened else None
    completions = [f for f in live if f.kind == MITIGATED]
    live_comms = [c for c in facts_of(state.comms) if not c.retracted]
    latest = max(live_comms, key=lambda c: c.key, default=None)
    settled = msgspec.structs.replace(
        state,
        opened_at=declaration.at if declaration else state.opened_at,
        detected_at=_detection(declaration, state.alert_starts),
        impact_started_at=declaration.effective(IMPACT_STARTED_AT) if declaration else None,
        acknowledged_at=first(ACKNOWLEDGED),
        mitigated_at=min(
            (f.at for f in completions if f.outcome is Outcome.SUCCEEDED), default=None
        ),
        mitigations=tuple(_completed(m, completions) for m in state.mitigations),
        resolved_at=resolved_at,
        closed_at=first(CLOSED),
        postmortem_published_at=first(POSTMORTEM),
        postmortem_reviewed_at=min(
            (f.reviewed_at for f in live if f.kind == REVIEWED and f.reviewed_at), default=None
        ),
        reopen_count=sum(1 for f in live if f.kind == REOPENED),
        comms_count=len(live_comms),
        first_comms_at=min((c.at for c in live_comms), default=None),
        last_comms_at=latest.at if latest else None,
        next_update_at=promise(latest, state.facts),
    )
    return _shown(settled)


def _detection(declaration: Fact | None, alert_starts: Runs) -> datetime | None:
    if declaration is None:
        return None
    starts = (f.at for f in facts_of(alert_starts) if not f.retracted)
    candidates = [declaration.at, declaration.effective(DETECTED_AT), *starts]
    return min(c for c in candidates if c is not None)


def _fired(state: Incident, event: AlertFired) -> Incident:
    """An alert starts firing: constant time, but for its name (few distinct ones)."""
    start = _fact(state, event)
    if event.starts_at is not None:
        start = msgspec.structs.replace(start, occurred_at=event.starts_at)
    changes: dict[str, Any] = {
        "alerts_firing": state.alerts_firing | {event.fingerprint},
        "alert_starts": appended(state.alert_starts, start),
    }
    if state.detected_at is not None and start.at < state.detected_at:
        changes["detected_at"] = start.at
    if event.alertname and event.alertname not in state.alert_names:
        changes["alert_names"] = (*state.alert_names, event.alertname)
    if event.truncated_alerts > state.alerts_truncated:
        changes["alerts_truncated"] = event.truncated_alerts
    return _with(state, **changes)


def _completed(mitigation: Mitigation, completions: list[Fact]) -> Mitigation:
    done = [f for f in completions if f.mitigation_id == mitigation.mitigation_id]
    return _ended(mitigation, max(done, key=lambda f: f.n, default=None))


def _ended(mitigation: Mitigation, last: Fact | None) -> Mitigation:
    """The mitigation as its latest completion (None: none) leaves it."""
    outcome, at = (last.outcome, last.at) if last else (None, None)
    if (outcome, at) == (mitigation.outcome, mitigation.completed_at):
        return mitigation
    return msgspec.structs.replace(mitigation, outcome=outcome, completed_at=at)


def _happened(state: Incident, fact: Fact, **changes: Any) -> Incident:
    """A lifecycle event (comms apart): one more fact, and the lifecycle settled again."""
    facts = (*state.facts, fact)
    advanced = _advanced(state, fact)
    if advanced is None:
        return _settle(_with(state, facts=facts, **changes))
    return _shown(_with(state, facts=facts, **changes, **advanced))


def _earliest(known: datetime | None, at: datetime) -> datetime:
    # Ties keep the known one, as `min` over the facts in log order does.
    return at if known is None or at < known else known


def _advanced(state: Incident, fact: Fact) -> dict[str, Any] | None:
    """What one more fact changes in a settled state, as `_settle` would find it, in constant
    time; None for the rare cases only a full `_settle` answers (a declaration after the first
    fact, a reopening, a resolution while reopened, a mitigation started after its completion).

    Exact because the state is settled: each lifecycle field is already the rule's answer over
    the facts before (amended or not), and the new fact is live and uncorrected, with the
    highest `n`. Comms (`_sent`) and alert starts (`_fired`) keep their fields settled.
    """
    at, kind = fact.occurred_at, fact.kind
    changes: dict[str, Any] = {}
    if kind == ACKNOWLEDGED:
        changes["acknowledged_at"] = _earliest(state.acknowledged_at, at)
    elif kind == MITIGATED:
        if fact.outcome is Outcome.SUCCEEDED:
            changes["mitigated_at"] = _earliest(state.mitigated_at, at)
        # The latest completion of a mitigation (highest n) sets its outcome: this one.
        changes["mitigations"] = tuple(
            _ended(m, fact) if m.mitigation_id == fact.mitigation_id else m
            for m in state.mitigations
        )
    elif kind == RESOLVED:
        resolved_at = state.resolved_at
        if resolved_at is None and state.reopen_count:
            return None  # the turn is a reopening: its time is in the facts only
        if resolved_at is None or at >= resolved_at:  # the latest turn now: resolved
            # `max` over the resolutions keeps the first of equal times.
            changes["resolved_at"] = resolved_at if resolved_at == at else at
            changes["next_update_at"] = None
    elif kind == CLOSED:
        changes["closed_at"] = _earliest(state.closed_at, at)
    elif kind == POSTMORTEM:
        changes["postmortem_published_at"] = _earliest(state.postmortem_published_at, at)
    elif kind == REVIEWED and fact.reviewed_at is not None:
        reviewed = _earliest(state.postmortem_reviewed_at, fact.reviewed_at)
        changes["postmortem_reviewed_at"] = reviewed
    elif kind == DECLARED and not state.facts:
        changes["opened_at"] = at
        changes["detected_at"] = _detection(fact, state.alert_starts)
        changes["impact_started_at"] = fact.impact_started_at
    else:
        return None
    mitigations = changes.get("mitigations", state.mitigations)
    if mitigations and _unsettled(mitigations, state.facts):
        return None
    return changes


def _unsettled(mitigations: tuple[Mitigation, ...], facts: tuple[Fact, ...]) -> bool:
    """Whether a mitigation started after its completion still lacks the outcome (a start only
    appends; the next settling gives it)."""
    pending = {m.mitigation_id for m in mitigations if m.completed_at is None}
    return bool(pending) and any(
        f.kind == MITIGATED and not f.retracted and f.mitigation_id in pending for f in facts
    )


def _sent(state: Incident, event: CommsSent) -> Incident:
    """Comms are many: one is added in constant time, all are settled again only when a
    correction or retraction touches one (`_settle`)."""
    fact = _fact(state, event, next_update_at=event.next_update_at)
    changes: dict[str, Any] = {
        "comms": appended(state.comms, fact),
        "comms_count": state.comms_count + 1,
    }
    if state.first_comms_at is None or fact.at < state.first_comms_at:
        changes["first_comms_at"] = fact.at
    if state.last_comms_at is None or fact.at >= state.last_comms_at:  # the latest: it speaks
        changes["last_comms_at"] = fact.at
        changes["next_update_at"] = promise(fact, state.facts)
    if event.status is not None and event.status is not Status.RESOLVED:
        changes["open_status"] = event.status
    return _shown(_with(state, **changes))


def _amended(state: Incident, change: Callable[[Fact], Fact | None]) -> Incident:
    """Apply `change` to the lifecycle fact it concerns (None: not that one) and settle."""
    facts = changed((state.facts,), change)
    if facts is not None:
        return _settle(msgspec.structs.replace(state, facts=facts[0]))
    comms = changed(state.comms, change)
    if comms is not None:
        return _settle(msgspec.structs.replace(state, comms=comms))
    starts = changed(state.alert_starts, change)
    if starts is not None:
        return _settle(msgspec.structs.replace(state, alert_starts=starts))
    return state


def _corrected(state: Incident, event: EventCorrected) -> Incident:
    at = event.corrected_occurred_at
    fields = [
        (name, value)
        for name, value in (
            (DETECTED_AT, event.corrected_detected_at),
            (IMPACT_STARTED_AT, event.corrected_impact_started_at),
        )
        if value is not None
    ]
    if at is None and not fields:
        return state  # text and actor: the timeline's business, not the lifecycle's

    def move(fact: Fact) -> Fact | None:
        if fact.event_id != event.target_event_id:
            return None
        fixes = fact.fixes if at is None else (*fact.fixes, (event.event_id, at))
        field_fixes = (*fact.field_fixes, *((event.event_id, n, v) for n, v in fields))
        return msgspec.structs.replace(fact, fixes=fixes, field_fixes=field_fixes)

    return _amended(state, move)


def _retracted(state: Incident, target: str) -> Incident:
    def take_back(fact: Fact) -> Fact | None:
        if fact.event_id == target:
            return None if fact.retracted else msgspec.structs.replace(fact, retracted=True)
        # A retracted correction:
        kept = tuple(fix for fix in fact.fixes if fix[0] != target)
        kept_fields = tuple(fix for fix in fact.field_fixes if fix[0] != target)
        if len(kept) == len(fact.fixes) and len(kept_fields) == len(fact.field_fixes):
            return None
        return msgspec.structs.replace(fact, fixes=kept, field_fixes=kept_fields)

    return _amended(state, take_back)


def _item_status(state: Incident, item_id: str, status: ActionStatus) -> tuple[ActionItem, ...]:
    return tuple(
        msgspec.structs.replace(a, status=status) if a.item_id == item_id else a
        for a in state.action_items
    )


def _by_hand(state: Incident, event: AnyEvent) -> bool:
    """Whether the incident is taken over once `event` is applied: a person's (not a
    monitor's) status, phase or commander."""
    return state.taken_over or event.source not in MONITORS


def evolve(state: Incident, event: AnyEvent) -> Incident:
    """Apply one stored fact. Total: the log is truth, so nothing here can refuse."""
    # The most frequent first: `match` tries the cases in order.
    match event:
        case IncidentNoteAdded() | NotificationSent():
            return _with(state)
        case CommsSent():
            return _sent(state, event)
        case AlertFired():
            return _fired(state, event)
        case AlertResolved():
            return _with(state, alerts_firing=state.alerts_firing - {event.fingerprint})
        case IncidentAcknowledged() | IncidentClosed():
            return _happened(state, _fact(state, event))
        case MitigationCompleted():
            completion = _fact(
                state, event, mitigation_id=event.mitigation_id, outcome=event.outcome
            )
            return _happened(state, completion)
        case MitigationStarted():
            started = Mitigation(
                event.mitigation_id,
                event.action,
                event.target,
                event.occurred_at,
                automated=event.automated,
                event_id=event.event_id,
            )
            return _with(state, mitigations=(*state.mitigations, started))
        case IncidentResolved():
            return _happened(state, _fact(state, event), resolved_phase=Phase.RESOLVED)
        case IncidentDeclared():
            declaration = _fact(
                state,
                event,
                detected_at=event.detected_at,
                impact_started_at=event.impact_started_at,
            )
            return _happened(
                state,
                declaration,
                incident_id=event.incident_id,
                declared=True,
                title=event.title,
                severity=event.severity,
                category=event.category,
                services=event.services,
                open_status=Status.INVESTIGATING,
                open_phase=Phase.DETECTED,
                alert_opened=event.source in MONITORS,
                impacts=(*state.impacts, (event.event_id, event.impact))
                if event.impact
                else state.impacts,
            )
        case IncidentImpactUpdated():
            return _with(state, impacts=(*state.impacts, (event.event_id, event.impact)))
        case IncidentReopened():
            return _happened(
                state,
                _fact(state, event),
                open_status=Status.INVESTIGATING,
                open_phase=Phase.INVESTIGATION,
            )
        case PostmortemPublished():
            phase = "resolved_phase" if state.is_resolved else "open_phase"
            changes: dict[str, Any] = {
                phase: Phase.POSTMORTEM,
                "postmortem_status": event.status,
                "postmortem_authors": event.authors or state.postmortem_authors,
            }
            return _happened(state, _fact(state, event), **changes)
        case PostmortemReviewed():
            return _happened(state, _fact(state, event, reviewed_at=event.held_at))
        case IncidentSeverityChanged():
            return _with(state, severity=event.to)
        case IncidentStatusChanged():
            # Resolved is the resolution's to set (decide refuses it here).
            if event.status is Status.RESOLVED:
                return _with(state)
            return _shown(_with(state, open_status=event.status, taken_over=_by_hand(state, event)))
        case IncidentPhaseChanged():
            phase = "resolved_phase" if state.is_resolved else "open_phase"
            return _shown(_with(state, **{phase: event.phase}, taken_over=_by_hand(state, event)))
        case IncidentRoleAssigned():
            others = tuple(pair for pair in state.roles if pair[0] is not event.role)
            taken = _by_hand(state, event) if event.role is Role.COMMANDER else state.taken_over
            return _with(state, roles=(*others, (event.role, event.person)), taken_over=taken)
        case IncidentRoleReleased():
            kept = tuple(pair for pair in state.roles if pair != (event.role, event.person))
            return _with(state, roles=kept)
        case IncidentEscalated():
            # Never lower: an escalation that names a lower level still escalates.
            return _with(state, escalation_level=max(state.escalation_level, event.level))
        case ActionItemAdded():
            item = ActionItem(
                event.item_id,
                event.title,
                event.owner,
                event.due,
                priority=event.priority,
                ticket_url=event.ticket_url,
            )
            return _with(state, action_items=(*state.action_items, item))
        case ActionItemStarted():
            return _with(
                state, action_items=_item_status(state, event.item_id, ActionStatus.IN_PROGRESS)
            )
        case ActionItemCompleted():
            return _with(state, action_items=_item_status(state, event.item_id, ActionStatus.DONE))
        case EventCorrected():
            return _corrected(_with(state), event)
        case EventRetracted():
            retracted = state.retracted | {event.target_event_id}
            return _retracted(_with(state, retracted=retracted), event.target_event_id)
        case EvidenceAttached():
            return _with(state, links=state.links | {event.uri})
        case _:
            assert_never(event)


def fold(events: Iterable[AnyEvent], state: Incident = INITIAL) -> Incident:
    return reduce(evolve, events, state)
