"""Escalation paths as policy data (issue 13, points 1 and 2): the runbook defaults, the policy
file's `[escalation]` table and its errors, the next level due, and `decide` taking the level
and target from the path when a person does not name them."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.commands import Acknowledge, AnyCommand, Declare, Escalate, Resolve
from events.decisions import Rejected, RejectionKind, decide
from events.escalation import (
    DEFAULT_ESCALATION,
    NO_ESCALATION,
    EscalationLevel,
    EscalationPolicy,
    Without,
)
from events.incident import INITIAL, Incident, fold
from events.policy import DEFAULT_POLICY, PolicyError, load_policy
from events.schema import IncidentEscalated, Severity, Source
from services.api.bodies import body_of

MIN = 60.0
INC = "INC-ESCAL1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def path_of(policy: EscalationPolicy, severity: Severity) -> list[tuple[float, str, str]]:
    return [(s.after_s / MIN, s.without.value, s.to) for s in policy.path(severity)]


def test_the_defaults_follow_runbook_002() -> None:
    """SEV-1: Primary (0) -> Secondary (5) -> Manager (10) -> VP (20); SEV-2: 15, 30; SEV-3: 30;
    SEV-4: primary only. SEV-n is P(n-1); the primary is paged by the alert (level 0)."""
    assert DEFAULT_POLICY.escalation == DEFAULT_ESCALATION
    assert path_of(DEFAULT_ESCALATION, Severity.P0) == [
        (5, "ack", "secondary-oncall"),
        (10, "resolution", "engineering-manager"),
        (20, "resolution", "vp-engineering"),
    ]
    assert path_of(DEFAULT_ESCALATION, Severity.P1) == [
        (15, "ack", "secondary-oncall"),
        (30, "resolution", "engineering-manager"),
    ]
    assert path_of(DEFAULT_ESCALATION, Severity.P2) == [(30, "ack", "secondary-oncall")]
    assert DEFAULT_ESCALATION.path(Severity.P3) == DEFAULT_ESCALATION.path("P4") == ()


@pytest.mark.parametrize(
    ("current", "acknowledged", "expected"),
    [
        (0, False, 1),
        (0, True, 2),  # nobody waits for an acknowledgement that came: the manager is next
        (1, False, 2),
        (2, True, 3),
        (3, False, None),  # the top of the path
        (5, False, None),
    ],
)
def test_the_next_level_due(current: int, acknowledged: bool, expected: int | None) -> None:
    assert DEFAULT_ESCALATION.next_level(Severity.P0, current, acknowledged) == expected


def test_an_acknowledged_p2_has_no_level_left_to_fall_due() -> None:
    assert DEFAULT_ESCALATION.next_level(Severity.P2, 0, acknowledged=True) is None
    assert DEFAULT_ESCALATION.next_level(Severity.P3, 0, acknowledged=False) is None


def _policy(tmp_path: Path, name: str, text: str) -> EscalationPolicy:
    path = tmp_path / name
    path.write_text(text)
    return load_policy(path).escalation


def test_a_toml_array_of_tables_replaces_one_severity_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    # Runbook 001's path for P0: levels 1-5 at 0-5, 5-10, 10-15, 15-30, 30+ min.
    policy = _policy(
        tmp_path,
        "policy.toml",
        "[[escalation.P0]]\n"
        'after = "5m"\nto = "senior-sre"\n'
        "[[escalation.P0]]\n"
        'after = "10m"\nwithout = "resolution"\nto = "engineering-manager"\n'
        "[[escalation.P0]]\n"
        'after = "15m"\nwithout = "Resolution"\nto = "vp-engineering"\n'
        "[[escalation.P0]]\n"
        'after = 1800\nwithout = "resolution"\nto = "executive-team"\n'
        "[escalation]\n"
        'P3 = [{after = "1h", to = "team-lead"}]\n'
        'SEV-3 = "none"\n',
    )
    assert path_of(policy, Severity.P0) == [
        (5, "ack", "senior-sre"),  # `without` defaults to the acknowledgement
        (10, "resolution", "engineering-manager"),
        (15, "resolution", "vp-engineering"),
        (30, "resolution", "executive-team"),
    ]
    assert policy.path(Severity.P1) == DEFAULT_ESCALATION.path(Severity.P1)
    assert policy.path(Severity.P2) == ()  # SEV-3 is P2
    assert path_of(policy, Severity.P3) == [(60, "ack", "team-lead")]


def test_yaml_and_none_for_every_path(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        "policy.yaml",
        "escalation:\n  P1:\n    - {after: 0m, without: ack, to: ' payments-oncall '}\n",
    )
    assert policy.path(Severity.P1) == (
        EscalationLevel(after_s=0.0, to="payments-oncall", without=Without.ACK),
    )
    assert _policy(tmp_path, "off.toml", 'escalation = "none"\n') == NO_ESCALATION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('escalation = "soon"\n', "escalation: expected a table of severities"),
        ("[escalation]\nP9 = []\n", "escalation.P9: not a severity"),
        ('[escalation]\nP1 = "5m"\n', "escalation.P1: expected a list of levels"),
        ("[escalation]\nP1 = [1]\n", "escalation.P1[1]: expected a table"),
        ('[[escalation.P1]]\nto = "x"\n', "escalation.P1[1].after: missing"),
        ('[[escalation.P1]]\nafter = "5m"\n', "escalation.P1[1].to: missing"),
        ('[[escalation.P1]]\nafter = "soon"\nto = "x"\n', "escalation.P1[1].after: not a dur"),
        ("[[escalation.P1]]\nafter = -5\nto = 'x'\n", "escalation.P1[1].after: expected a dur"),
        ("[[escalation.P1]]\nafter = true\nto = 'x'\n", "escalation.P1[1].after"),
        ("[[escalation.P1]]\nafter = '5m'\nto = ''\n", "escalation.P1[1].to: expected a person"),
        ("[[escalation.P1]]\nafter = '5m'\nto = 7\n", "escalation.P1[1].to"),
        (
            "[[escalation.P1]]\nafter = '5m'\nto = 'x'\nwithout = 'mitigation'\n",
            "escalation.P1[1].without: expected 'ack' or 'resolution'",
        ),
        (
            "[[escalation.P1]]\nafter = '5m'\nto = 'x'\nafer = '1m'\n",
            "escalation.P1[1].afer: unknown key (use after, without, to)",
        ),
        (
            "[[escalation.P1]]\nafter = '10m'\nto = 'x'\n[[escalation.P1]]\nafter = '5m'\n"
            "to = 'y'\n",
            "escalation.P1[2].after: levels fall due in order",
        ),
        (
            "[escalation]\nP1 = [" + ", ".join(["{after = '1m', to = 'x'}"] * 11) + "]\n",
            "escalation.P1: at most 10 levels",
        ),
    ],
)
def test_bad_escalation_tables_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=re.escape(message)) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_a_review_target_from_the_file(tmp_path: Path) -> None:
    """Runbook 004's review meeting within 48 hours instead of runbook 002's week."""
    path = tmp_path / "policy.toml"
    path.write_text('[P1]\nreview = "48h"\n[P2]\nreview = "none"\n')
    policy = load_policy(path)
    assert policy.for_severity(Severity.P1).review_s == 48 * 3600
    assert policy.for_severity(Severity.P2).review_s is None
    assert policy.for_severity(Severity.P0).review_s == 7 * 86400
    assert policy.for_severity(Severity.P3).review_s is None  # no postmortem, no review


# --- decide: the path's level and target ------------------------------------------------------


def cmd(cls: type[Any], minute: float, **fields: Any) -> Any:
    envelope = {
        "incident_id": INC,
        "event_id": f"{cls.__name__.lower()}-{next(_serial)}",
        "occurred_at": T0 + timedelta(minutes=minute),
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


def declared(severity: Severity = Severity.P0) -> Incident:
    return run(cmd(Declare, 0, title="checkout 500s", severity=severity))


def escalate(state: Incident, **fields: Any) -> tuple[int, str] | Rejected:
    fields.setdefault("escalation", DEFAULT_ESCALATION)
    decision = decide(cmd(Escalate, 30, **fields), state)
    if isinstance(decision, Rejected):
        return decision
    [event] = decision
    assert isinstance(event, IncidentEscalated)
    return event.level, event.to


def test_without_level_or_target_the_path_decides() -> None:
    state = declared()
    assert escalate(state) == (1, "secondary-oncall")
    acknowledged = run(cmd(Acknowledge, 2), state=state)
    assert escalate(acknowledged) == (2, "engineering-manager")
    at_two = run(cmd(Escalate, 12, level=2, to="carol"), state=state)
    assert escalate(at_two) == (3, "vp-engineering")


def test_explicit_values_win() -> None:
    state = declared()
    assert escalate(state, to="payments-oncall") == (1, "payments-oncall")
    assert escalate(state, level=3) == (3, "vp-engineering")
    assert escalate(state, level=2, to="dba-oncall") == (2, "dba-oncall")


def test_the_top_of_the_path_is_a_conflict_unless_a_target_is_named() -> None:
    top = run(cmd(Escalate, 20, level=3, to="vp-engineering"), state=declared())
    refused = escalate(top)
    assert isinstance(refused, Rejected) and refused.kind is RejectionKind.CONFLICT
    assert refused.reason == (
        f"incident {INC} is at escalation level 3, the top of the P0 escalation path: "
        "say whom to escalate to (`to`)"
    )
    assert escalate(top, to="cto") == (4, "cto")
    beyond = escalate(declared(), level=5)
    assert isinstance(beyond, Rejected) and "ends at level 3, below level 5" in beyond.reason


def test_a_severity_without_a_path_needs_a_target() -> None:
    state = declared(Severity.P3)
    refused = escalate(state)
    assert isinstance(refused, Rejected) and refused.kind is RejectionKind.CONFLICT
    assert "no escalation path for P3" in refused.reason
    assert escalate(state, to="team-lead") == (1, "team-lead")
    assert isinstance(escalate(state, escalation=NO_ESCALATION), Rejected)


def test_an_acknowledged_p2_still_goes_one_step_up_its_path() -> None:
    """Nothing left falls due, but a person may still bring the secondary in."""
    state = run(cmd(Acknowledge, 1), state=declared(Severity.P2))
    assert escalate(state) == (1, "secondary-oncall")


def test_lifecycle_rules_come_first() -> None:
    resolved = run(cmd(Resolve, 5), state=declared())
    refused = escalate(resolved)
    assert isinstance(refused, Rejected) and "is resolved" in refused.reason
    missing = escalate(INITIAL)
    assert isinstance(missing, Rejected) and missing.kind is RejectionKind.NOT_FOUND


def test_a_client_cannot_send_the_paths() -> None:
    fields = {f.name for f in msgspec.structs.fields(body_of(Escalate))}
    assert {"level", "to", "reason"} <= fields and "escalation" not in fields
