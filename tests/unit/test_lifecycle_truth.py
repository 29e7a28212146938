"""One truth for lifecycle facts (issue 10, points 8 and 9), in the domain.

Corrections and retractions change the folded state, so `decide` judges what the board, the
metrics and the breaches show; comms after a resolution leave it resolved; closed is final and
says so; escalations never lower the level; the fold keeps no per-event ids.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from events.commands import (
    Acknowledge,
    AddNote,
    AnyCommand,
    AssignRole,
    ChangePhase,
    ChangeSeverity,
    ChangeStatus,
    Close,
    CompleteMitigation,
    CorrectEvent,
    Declare,
    Escalate,
    Record,
    RecordAlertFired,
    Reopen,
    Resolve,
    RetractEvent,
    SendComms,
    StartMitigation,
)
from events.decisions import Rejected, RejectionKind, decide
from events.incident import INITIAL, Incident, fold
from events.schema import (
    Audience,
    CommsKind,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentNoteAdded,
    IncidentReopened,
    IncidentResolved,
    MitigationAction,
    Outcome,
    Phase,
    Role,
    Severity,
    Source,
    Status,
)

INC = "INC-TRUTH1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def cmd(cls: type[Any], minute: float | None = None, **fields: Any) -> Any:
    n = next(_serial)
    envelope = {
        "incident_id": INC,
        "event_id": fields.pop("event_id", f"{cls.__name__.lower()}-{n}"),
        "occurred_at": T0 + timedelta(minutes=n if minute is None else minute),
        "actor": "alice@example.com",
        "source": Source.CLI,
    }
    return cls(**(envelope | fields))


def run(*commands: AnyCommand, state: Incident = INITIAL) -> Incident:
    for command in commands:
        decision = decide(command, state)
        assert not isinstance(decision, Rejected), (command, decision)
        state = fold(decision, state)
    return state


def declared() -> Incident:
    return run(cmd(Declare, 0, event_id="declare", title="checkout 500s", severity=Severity.P1))


def comms(minute: float, **fields: Any) -> SendComms:
    fields.setdefault("audience", Audience.STATUS_PAGE)
    fields.setdefault("kind", CommsKind.UPDATE)
    fields.setdefault("message", "an update")
    result: SendComms = cmd(SendComms, minute, **fields)
    return result


# --- point 8: retractions and corrections change the folded state ------------------------------


def test_a_retracted_resolution_leaves_the_incident_unresolved() -> None:
    state = run(
        cmd(ChangeStatus, 5, status=Status.MONITORING),
        cmd(ChangePhase, 6, phase=Phase.VALIDATION),
        cmd(Resolve, 10, event_id="resolve"),
        state=declared(),
    )
    state = run(cmd(RetractEvent, 11, target_event_id="resolve", reason="not fixed"), state=state)
    assert not state.is_resolved and state.resolved_at is None
    assert (state.status, state.phase) == (Status.MONITORING, Phase.VALIDATION)
    decision = decide(cmd(Resolve, 12), state)
    assert isinstance(decision, list) and [type(e) for e in decision] == [IncidentResolved]
    assert fold(decision, state).resolved_at == T0 + timedelta(minutes=12)


def test_a_retracted_reopening_leaves_the_incident_resolved() -> None:
    state = run(
        cmd(Resolve, 10, event_id="resolve"),
        cmd(Reopen, 20, event_id="reopen"),
        cmd(RetractEvent, 21, target_event_id="reopen", reason="a flapping alert"),
        state=declared(),
    )
    assert state.is_resolved and state.resolved_at == T0 + timedelta(minutes=10)
    assert (state.status, state.phase) == (Status.RESOLVED, Phase.RESOLVED)
    assert decide(cmd(Resolve, 22), state) == []
    reopen = decide(cmd(Reopen, 23), state)
    assert isinstance(reopen, list) and [type(e) for e in reopen] == [IncidentReopened]


def test_a_retracted_acknowledgement_can_be_given_again() -> None:
    state = run(
        cmd(Acknowledge, 3, event_id="ack"),
        cmd(RetractEvent, 4, target_event_id="ack", reason="wrong incident"),
        state=declared(),
    )
    assert state.acknowledged_at is None
    decision = decide(cmd(Acknowledge, 5), state)
    assert isinstance(decision, list) and [type(e) for e in decision] == [IncidentAcknowledged]
    assert fold(decision, state).acknowledged_at == T0 + timedelta(minutes=5)


def test_corrected_times_move_the_lifecycle() -> None:
    state = run(
        cmd(Acknowledge, 10, event_id="ack"),
        cmd(StartMitigation, 11, mitigation_id="m1", action=MitigationAction.ROLLBACK),
        cmd(CompleteMitigation, 20, event_id="mc", mitigation_id="m1", outcome=Outcome.SUCCEEDED),
        cmd(Resolve, 30, event_id="resolve"),
        state=declared(),
    )

    def moved(target: str, minute: float) -> CorrectEvent:
        at = T0 + timedelta(minutes=minute)
        fix: CorrectEvent = cmd(
            CorrectEvent, 40, target_event_id=target, corrected_occurred_at=at, reason="typed late"
        )
        return fix

    state = run(
        moved("declare", -2), moved("ack", 4), moved("mc", 15), moved("resolve", 25), state=state
    )
    assert state.opened_at == T0 - timedelta(minutes=2)
    assert state.acknowledged_at == T0 + timedelta(minutes=4)
    assert state.mitigated_at == T0 + timedelta(minutes=15)
    mitigation = state.mitigation("m1")
    assert mitigation is not None and mitigation.completed_at == T0 + timedelta(minutes=15)
    assert state.resolved_at == T0 + timedelta(minutes=25)


def test_a_retracted_correction_restores_the_time_before_it() -> None:
    state = run(cmd(Acknowledge, 10, event_id="ack"), state=declared())
    first, second = (
        cmd(
            CorrectEvent,
            20 + k,
            event_id=f"fix-{k}",
            target_event_id="ack",
            corrected_occurred_at=T0 + timedelta(minutes=minute),
            reason="r",
        )
        for k, minute in enumerate((4, 6))
    )
    state = run(first, second, state=state)
    assert state.acknowledged_at == T0 + timedelta(minutes=6)  # the latest correction wins
    state = run(cmd(RetractEvent, 30, target_event_id="fix-1", reason="r"), state=state)
    assert state.acknowledged_at == T0 + timedelta(minutes=4)
    state = run(cmd(RetractEvent, 31, target_event_id="fix-0", reason="r"), state=state)
    assert state.acknowledged_at == T0 + timedelta(minutes=10)


def test_a_resolution_corrected_before_its_reopening_no_longer_resolves() -> None:
    """Like the metrics: the latest resolve or reopen in effective time decides."""
    state = run(
        cmd(Resolve, 10),
        cmd(Reopen, 20),
        cmd(Resolve, 30, event_id="again"),
        state=declared(),
    )
    assert state.is_resolved
    fix = cmd(
        CorrectEvent,
        31,
        target_event_id="again",
        corrected_occurred_at=T0 + timedelta(minutes=15),
        reason="r",
    )
    state = run(fix, state=state)
    assert not state.is_resolved and state.status is Status.INVESTIGATING


def test_retracted_comms_leave_the_comms_clock_of_the_others() -> None:
    later = T0 + timedelta(minutes=40)
    state = run(
        comms(5, kind=CommsKind.INITIAL, next_update_at=T0 + timedelta(minutes=35)),
        comms(20, event_id="update", next_update_at=later),
        state=declared(),
    )
    assert (state.comms_count, state.last_comms_at, state.next_update_at) == (
        2,
        T0 + timedelta(minutes=20),
        later,
    )
    state = run(cmd(RetractEvent, 21, target_event_id="update", reason="r"), state=state)
    assert (state.comms_count, state.last_comms_at, state.next_update_at) == (
        1,
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=35),
    )
    assert state.first_comms_at == T0 + timedelta(minutes=5)


def test_a_closed_incident_keeps_its_resolution() -> None:
    state = run(cmd(Resolve, 10, event_id="resolve"), cmd(Close, 20), state=declared())
    retract = decide(cmd(RetractEvent, 21, target_event_id="resolve", reason="r"), state)
    assert isinstance(retract, Rejected) and "closed" in retract.reason
    # Correcting its time is fine: the record gets better, the incident stays resolved.
    fix = cmd(
        CorrectEvent,
        22,
        target_event_id="resolve",
        corrected_occurred_at=T0 + timedelta(minutes=9),
        reason="r",
    )
    assert run(fix, state=state).resolved_at == T0 + timedelta(minutes=9)


# --- point 9 -------------------------------------------------------------------------------------


def test_comms_after_resolving_leave_it_resolved_and_arm_no_update_clock() -> None:
    state = run(
        comms(5, status=Status.IDENTIFIED, next_update_at=T0 + timedelta(minutes=35)),
        cmd(Resolve, 10),
        comms(
            12,
            kind=CommsKind.RESOLUTION,
            status=Status.MONITORING,
            next_update_at=T0 + timedelta(hours=2),
        ),
        state=declared(),
    )
    assert (state.status, state.phase) == (Status.RESOLVED, Phase.RESOLVED)
    assert state.next_update_at is None
    assert (state.comms_count, state.last_comms_at) == (2, T0 + timedelta(minutes=12))
    # Reopened: the old promises stay kept; the next comms sets the clock again.
    state = run(cmd(Reopen, 20), state=state)
    assert (state.status, state.next_update_at) == (Status.INVESTIGATING, None)
    state = run(comms(25, next_update_at=T0 + timedelta(minutes=55)), state=state)
    assert state.next_update_at == T0 + timedelta(minutes=55)


def _closed() -> Incident:
    return run(cmd(Resolve, 10), cmd(Close, 20), state=declared())


@pytest.mark.parametrize(
    "when",
    [
        cmd(Acknowledge, 30),
        cmd(ChangeStatus, 30, status=Status.MONITORING),
        cmd(ChangePhase, 30, phase=Phase.MITIGATION),
        cmd(ChangeSeverity, 30, to=Severity.P3),
        cmd(AssignRole, 30, role=Role.SCRIBE, person="eve"),
        cmd(Escalate, 30, level=2, to="cto"),
        cmd(StartMitigation, 30, mitigation_id="m9", action=MitigationAction.RESTART),
        cmd(RecordAlertFired, 30, fingerprint="fp-9"),
        comms(30),
        cmd(Reopen, 30),
    ],
    ids=lambda w: type(w).__name__,
)
def test_refusals_on_a_closed_incident_never_say_reopen_it_first(when: Any) -> None:
    decision = decide(when, _closed())
    assert isinstance(decision, Rejected)
    assert "closed" in decision.reason
    assert "reopen it" not in decision.reason


def test_refusals_on_a_resolved_incident_still_point_to_reopen() -> None:
    resolved = run(cmd(Resolve, 10), state=declared())
    decision = decide(cmd(ChangeStatus, 30, status=Status.MONITORING), resolved)
    assert isinstance(decision, Rejected) and "reopen it first" in decision.reason


def test_escalating_without_a_level_goes_one_level_up() -> None:
    state = run(cmd(Escalate, 5, level=3, to="payments-oncall"), state=declared())
    decision = decide(cmd(Escalate, 6, to="vp-eng"), state)
    assert isinstance(decision, list)
    [escalated] = decision
    assert isinstance(escalated, IncidentEscalated) and escalated.level == 4
    assert fold(decision, state).escalation_level == 4
    first = decide(cmd(Escalate, 6, to="oncall"), declared())
    assert isinstance(first, list) and [e.level for e in first] == [1]  # type: ignore[union-attr]


def test_an_escalation_never_lowers_the_level() -> None:
    state = run(cmd(Escalate, 5, level=3, to="payments-oncall"), state=declared())
    lower = cmd(Escalate, 6, level=2, to="team-lead")
    decision = decide(lower, state)
    assert isinstance(decision, Rejected) and decision.kind is RejectionKind.CONFLICT
    recorded = IncidentEscalated(
        event_id="esc-low",
        incident_id=INC,
        occurred_at=T0,
        actor="pagerduty",
        source=Source.PAGERDUTY,
        level=2,
        to="team-lead",
    )
    assert isinstance(decide(Record(recorded), state), Rejected)
    # A stored lower level (written before this rule) does not lower the folded one either.
    assert fold([recorded], state).escalation_level == 3
    same = decide(cmd(Escalate, 7, level=3, to="another-team"), state)
    assert isinstance(same, list) and len(same) == 1
    top = run(cmd(Escalate, 8, level=10, to="ceo"), state=state)
    assert isinstance(decide(cmd(Escalate, 9, to="board"), top), Rejected)


# --- the fold is linear: no per-event ids in the state -------------------------------------------


def _with_notes(count: int) -> Incident:
    notes = [
        IncidentNoteAdded(
            event_id=f"note-{k}",
            incident_id=INC,
            occurred_at=T0 + timedelta(seconds=k),
            actor="bob",
            source=Source.API,
            text="looking",
        )
        for k in range(count)
    ]
    return fold(notes, declared())


def test_the_folded_state_does_not_grow_with_events_it_does_not_need() -> None:
    small, large = _with_notes(10), _with_notes(2000)
    assert large.version == small.version + 1990
    # Equal but for the version: nothing per event is kept (no set of seen ids to copy).
    assert msgspec.structs.replace(large, version=0) == msgspec.structs.replace(small, version=0)
    assert b"note-1" not in msgspec.json.encode(large)


def test_a_retraction_is_judged_without_a_history_of_ids() -> None:
    """The write path answers a known event id from the log; decide remembers retractions."""
    state = run(cmd(AddNote, 5, event_id="note", text="it is DNS"), state=declared())
    retract = cmd(RetractEvent, 6, target_event_id="note", reason="it was not")
    state = run(retract, state=state)
    assert decide(cmd(RetractEvent, 7, target_event_id="note", reason="again"), state) == []
