"""events.incident: the fold's constant-time lifecycle steps give what settling every lifecycle
field again from all the facts gives (issue 15).

`evolve` takes a lifecycle event in without rescanning the facts where it can; the reference
here is the rescan, kept slow and plain: after every event that settles, the state must equal,
byte for byte, the state settled again from its facts by `settled`. Sequences mix every event
type with corrections and retractions of earlier ones, in any order, with equal instants
written in two time zones (which one a tie keeps shows in the bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import event_of

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
    facts_of,
)
from events.incident import INITIAL, Incident, Mitigation, evolve, fold
from events.schema import (
    ActionItemAdded,
    AlertFired,
    AlertResolved,
    AnyEvent,
    Audience,
    CommsKind,
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
    IncidentSeverityChanged,
    IncidentStatusChanged,
    MitigationAction,
    MitigationCompleted,
    MitigationStarted,
    Outcome,
    Phase,
    PostmortemPublished,
    PostmortemReviewed,
    Role,
    Severity,
    Source,
    Status,
)

INC = "INC-FOLD1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PLUS_ONE = timezone(timedelta(hours=1))

# --- the reference: every lifecycle field again from all the facts -----------------------------


def _last_turn(facts: tuple[Fact, ...]) -> Fact | None:
    turns = [f for f in facts if f.kind in (RESOLVED, REOPENED) and not f.retracted]
    return max(turns, key=lambda f: f.key, default=None)


def _promise(latest: Fact | None, facts: tuple[Fact, ...]) -> datetime | None:
    turn = _last_turn(facts)
    if latest is None or (turn is not None and (turn.kind == RESOLVED or turn.key > latest.key)):
        return None
    return latest.next_update_at


def _detection(declaration: Fact | None, alert_starts: Runs) -> datetime | None:
    if declaration is None:
        return None
    starts = [f.at for f in facts_of(alert_starts) if not f.retracted]
    candidates = [declaration.at, declaration.effective(DETECTED_AT), *starts]
    return min(c for c in candidates if c is not None)


def _completed(mitigation: Mitigation, completions: list[Fact]) -> Mitigation:
    done = [f for f in completions if f.mitigation_id == mitigation.mitigation_id]
    last = max(done, key=lambda f: f.n, default=None)
    outcome, at = (last.outcome, last.at) if last else (None, None)
    if (outcome, at) == (mitigation.outcome, mitigation.completed_at):
        return mitigation  # an equal time as first written, whatever its zone
    return msgspec.structs.replace(mitigation, outcome=outcome, completed_at=at)


def settled(state: Incident) -> Incident:
    """The state with every lifecycle field recomputed from its facts, comms and alert starts."""
    live = [f for f in state.facts if not f.retracted]

    def first(kind: str, ok: Callable[[Fact], bool] = lambda _: True) -> datetime | None:
        return min((f.at for f in live if f.kind == kind and ok(f)), default=None)

    turn = _last_turn(state.facts)
    resolved_at = None
    if turn is not None and turn.kind == RESOLVED:
        resolved_at = max(f.at for f in live if f.kind == RESOLVED)
    declarations = [f for f in state.facts if f.kind == DECLARED]
    opened = [f for f in declarations if not f.retracted] or declarations
    declaration = opened[0] if opened else None
    completions = [f for f in live if f.kind == MITIGATED]
    live_comms = [c for c in facts_of(state.comms) if not c.retracted]
    latest = max(live_comms, key=lambda c: c.key, default=None)
    status, phase = state.open_status, state.open_phase
    if resolved_at is not None:
        status, phase = Status.RESOLVED, state.resolved_phase or Phase.RESOLVED
    return msgspec.structs.replace(
        state,
        opened_at=declaration.at if declaration else state.opened_at,
        detected_at=_detection(declaration, state.alert_starts),
        impact_started_at=declaration.effective(IMPACT_STARTED_AT) if declaration else None,
        acknowledged_at=first(ACKNOWLEDGED),
        mitigated_at=first(MITIGATED, lambda f: f.outcome is Outcome.SUCCEEDED),
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
        next_update_at=_promise(latest, state.facts),
        status=status,
        phase=phase,
    )


def automation(state: Incident) -> tuple[bool, bool, bool]:
    """`Incident.automation` as the metrics define it, from every mitigation and fact."""
    live = [m for m in state.mitigations if m.event_id not in state.retracted]
    started = any(m.automated for m in live)
    succeeded = any(m.automated and m.outcome is Outcome.SUCCEEDED for m in live)
    firsts = [
        f
        for f in state.facts
        if f.kind == MITIGATED and not f.retracted and f.outcome is Outcome.SUCCEEDED
    ]
    first = min(firsts, key=lambda f: f.key, default=None)
    mitigation = state.mitigation(first.mitigation_id or "") if first else None
    automated = mitigation is not None and mitigation.event_id not in state.retracted
    return started, succeeded, automated and mitigation is not None and mitigation.automated


def declared_at(state: Incident) -> datetime | None:
    return next((f.at for f in state.facts if f.kind == DECLARED and not f.retracted), None)


_LIFECYCLE = (
    IncidentDeclared,
    IncidentAcknowledged,
    MitigationCompleted,
    IncidentResolved,
    IncidentReopened,
    IncidentClosed,
    PostmortemPublished,
    PostmortemReviewed,
)


def _settles(before: Incident, after: Incident, event: AnyEvent) -> bool:
    """Whether the event settles the lifecycle: a lifecycle event, or an amendment of a fact."""
    if isinstance(event, EventCorrected | EventRetracted):
        kept = (before.facts, before.comms, before.alert_starts)
        return kept != (after.facts, after.comms, after.alert_starts)
    return isinstance(event, _LIFECYCLE)


def reference_fold(events: list[AnyEvent]) -> list[bytes]:
    """The state after each event, settled from all the facts where the lifecycle settles."""
    states, state = [], INITIAL
    for event in events:
        after = evolve(state, event)
        state = settled(after) if _settles(state, after, event) else after
        states.append(msgspec.json.encode(state))
    return states


# --- generated histories -------------------------------------------------------------------------

_ids = st.sampled_from([f"e{k}" for k in range(6)])
_mitigations = st.sampled_from(["m1", "m2"])
# Few instants, each written in UTC or at +01:00: ties are frequent and show in the bytes.
_times = st.builds(
    lambda minute, zone: (T0 + timedelta(minutes=minute)).astimezone(zone),
    st.integers(0, 3),
    st.sampled_from([UTC, PLUS_ONE]),
)
_maybe_times = st.none() | _times


def _envelope() -> dict[str, Any]:
    return {
        "event_id": _ids,
        "incident_id": st.just(INC),
        "occurred_at": _times,
        "actor": st.just("ann"),
        "source": st.sampled_from([Source.API, Source.ALERTMANAGER]),
    }


def _event(cls: type[Any], **fields: Any) -> st.SearchStrategy[AnyEvent]:
    return st.builds(cls, **_envelope(), **fields)


def _rarely_lifecycle(cls: type[Any]) -> st.SearchStrategy[AnyEvent]:
    """Types the lifecycle ignores, every field drawn, in this incident."""
    return event_of(cls).map(lambda e: msgspec.structs.replace(e, incident_id=INC))


# Each lifecycle type is a branch of its own; the types the lifecycle ignores share one.
_others = st.one_of(
    _event(IncidentStatusChanged, status=st.sampled_from(Status)),
    _event(IncidentPhaseChanged, phase=st.sampled_from(Phase)),
    _event(IncidentRoleAssigned, role=st.just(Role.COMMANDER), person=st.just("bob")),
    _event(IncidentNoteAdded, text=st.just("note")),
    *(
        _rarely_lifecycle(cls)
        for cls in (
            IncidentImpactUpdated,
            IncidentSeverityChanged,
            IncidentEscalated,
            ActionItemAdded,
            EvidenceAttached,
        )
    ),
)
EVENTS: st.SearchStrategy[AnyEvent] = st.one_of(
    _event(
        IncidentDeclared,
        title=st.just("t"),
        severity=st.sampled_from(Severity),
        detected_at=_maybe_times,
        impact_started_at=_maybe_times,
    ),
    _event(IncidentAcknowledged),
    _event(
        MitigationStarted,
        mitigation_id=_mitigations,
        action=st.sampled_from(MitigationAction),
        automated=st.booleans(),
    ),
    _event(MitigationCompleted, mitigation_id=_mitigations, outcome=st.sampled_from(Outcome)),
    _event(IncidentResolved),
    _event(IncidentReopened),
    _event(IncidentClosed),
    _event(PostmortemPublished),
    _event(PostmortemReviewed, held_at=_times),
    _event(
        CommsSent,
        audience=st.just(Audience.STATUS_PAGE),
        kind=st.just(CommsKind.UPDATE),
        message=st.just("update"),
        status=st.none() | st.sampled_from(Status),
        next_update_at=_maybe_times,
    ),
    _event(AlertFired, fingerprint=st.sampled_from(["f1", "f2"]), starts_at=_maybe_times),
    _event(AlertResolved, fingerprint=st.sampled_from(["f1", "f2"])),
    _event(
        EventCorrected,
        target_event_id=_ids,
        corrected_occurred_at=_maybe_times,
        corrected_detected_at=_maybe_times,
        corrected_impact_started_at=_maybe_times,
        reason=st.just("typo"),
    ),
    _event(EventRetracted, target_event_id=_ids, reason=st.just("wrong")),
    _others,
)
HISTORIES = st.lists(EVENTS, min_size=8, max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HISTORIES)
def test_the_fold_equals_settling_from_all_facts_after_every_event(
    events: list[AnyEvent],
) -> None:
    expected = reference_fold(events)
    state = INITIAL
    for event, want in zip(events, expected, strict=True):
        state = evolve(state, event)
        assert msgspec.json.encode(state) == want, event
        assert state.automation == automation(state)
        assert state.declared_at == declared_at(state)
    assert fold(events) == state


def test_a_realistic_incident_is_taken_in_without_rescanning_the_facts() -> None:
    """The common run (declare, acknowledge, mitigate, resolve) settles as the reference does."""
    at = [T0 + timedelta(minutes=m) for m in range(6)]
    env: dict[str, Any] = {"incident_id": INC, "actor": "ann", "source": Source.API}
    events: list[AnyEvent] = [
        IncidentDeclared(event_id="d", occurred_at=at[0], title="t", severity=Severity.P2, **env),
        IncidentAcknowledged(event_id="a", occurred_at=at[1], **env),
        MitigationStarted(
            event_id="ms",
            occurred_at=at[2],
            mitigation_id="m1",
            action=MitigationAction.ROLLBACK,
            **env,
        ),
        MitigationCompleted(
            event_id="mc", occurred_at=at[3], mitigation_id="m1", outcome=Outcome.SUCCEEDED, **env
        ),
        IncidentResolved(event_id="r", occurred_at=at[4], **env),
        IncidentClosed(event_id="c", occurred_at=at[5], **env),
    ]
    state = fold(events)
    assert msgspec.json.encode(state) == reference_fold(events)[-1]
    assert (state.opened_at, state.acknowledged_at, state.mitigated_at) == (at[0], at[1], at[3])
    assert (state.resolved_at, state.closed_at, state.status) == (at[4], at[5], Status.RESOLVED)
    assert state.mitigations[0].completed_at == at[3]


def test_a_mitigation_started_after_its_completion_gets_its_outcome_at_the_next_settling() -> None:
    env: dict[str, Any] = {"incident_id": INC, "actor": "ann", "source": Source.API}
    events: list[AnyEvent] = [
        IncidentDeclared(event_id="d", occurred_at=T0, title="t", severity=Severity.P2, **env),
        MitigationCompleted(
            event_id="mc", occurred_at=T0, mitigation_id="m1", outcome=Outcome.FAILED, **env
        ),
        MitigationStarted(
            event_id="ms",
            occurred_at=T0,
            mitigation_id="m1",
            action=MitigationAction.ROLLBACK,
            **env,
        ),
    ]
    assert fold(events).mitigations[0].outcome is None  # a start only appends
    acknowledged = fold([IncidentAcknowledged(event_id="a", occurred_at=T0, **env)], fold(events))
    assert acknowledged.mitigations[0].outcome is Outcome.FAILED


def test_equal_times_keep_the_first_as_written() -> None:
    """`min` and `max` over the facts keep the first of equal instants, and its zone shows."""
    env: dict[str, Any] = {"incident_id": INC, "actor": "ann", "source": Source.API}
    first, second = T0, T0.astimezone(PLUS_ONE)

    def completion(event_id: str, at: datetime) -> MitigationCompleted:
        return MitigationCompleted(
            event_id=event_id, occurred_at=at, mitigation_id="m1", outcome=Outcome.SUCCEEDED, **env
        )

    events: list[AnyEvent] = [
        IncidentDeclared(event_id="d", occurred_at=T0, title="t", severity=Severity.P2, **env),
        MitigationStarted(
            event_id="ms",
            occurred_at=T0,
            mitigation_id="m1",
            action=MitigationAction.ROLLBACK,
            **env,
        ),
        completion("mc1", first),
        completion("mc2", second),
        IncidentResolved(event_id="r1", occurred_at=first, **env),
        IncidentResolved(event_id="r2", occurred_at=second, **env),
    ]
    state = fold(events)
    assert msgspec.json.encode(state) == reference_fold(events)[-1]
    times = (state.mitigated_at, state.mitigations[0].completed_at, state.resolved_at)
    assert [t.tzinfo if t else None for t in times] == [UTC, UTC, UTC]


def test_a_later_success_does_not_move_mitigated_at() -> None:
    """MTTM ends at the first mitigation that worked: a second success, later, changes nothing
    (and neither does a failure after it)."""
    at = [T0 + timedelta(minutes=m) for m in range(8)]
    env: dict[str, Any] = {"incident_id": INC, "actor": "ann", "source": Source.API}

    def started(n: int, minute: int) -> MitigationStarted:
        return MitigationStarted(
            event_id=f"ms{n}",
            occurred_at=at[minute],
            mitigation_id=f"m{n}",
            action=MitigationAction.ROLLBACK,
            **env,
        )

    def completed(n: int, minute: int, outcome: Outcome) -> MitigationCompleted:
        return MitigationCompleted(
            event_id=f"mc{n}",
            occurred_at=at[minute],
            mitigation_id=f"m{n}",
            outcome=outcome,
            **env,
        )

    declared = IncidentDeclared(
        event_id="d", occurred_at=at[0], title="t", severity=Severity.P2, **env
    )
    state = fold(
        [
            declared,
            started(1, 1),
            completed(1, 2, Outcome.SUCCEEDED),
            started(2, 3),
            completed(2, 5, Outcome.SUCCEEDED),
            started(3, 6),
            completed(3, 7, Outcome.FAILED),
        ]
    )
    assert state.mitigated_at == at[2]
    assert [m.completed_at for m in state.mitigations] == [at[2], at[5], at[7]]
