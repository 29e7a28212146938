"""The runbooks' words (issue 13): severity aliases (defaults, the policy's table, monitors'
labels, producer events decoded canonically), phase words said as a status, teams."""

import json
from pathlib import Path
from typing import Any

import pytest

from events.aliases import (
    DEFAULT_SEVERITY_ALIASES,
    canonical_severity,
    decode_aliased,
    parse_severity_aliases,
    phase_meant,
)
from events.policy import DEFAULT_POLICY, PolicyError, load_policy
from events.schema import IncidentDeclared, IncidentSeverityChanged, Phase, SchemaError, Severity


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("SEV-1", Severity.P0),
        ("sev-2", Severity.P1),
        (" Sev-3 ", Severity.P2),
        ("SEV-4", Severity.P3),
        ("p4", Severity.P4),
        ("P0", Severity.P0),
        ("SEV-5", None),
        ("SEV1", None),
        ("critical", None),
    ],
)
def test_default_words(word: str, severity: Severity | None) -> None:
    assert canonical_severity(word) is severity
    assert canonical_severity(word, DEFAULT_POLICY.severity_aliases) is severity
    if word.strip().upper().startswith("SEV"):  # aliases come only from the table given
        assert canonical_severity(word, {}) is None
    assert set(DEFAULT_SEVERITY_ALIASES) == {"SEV-1", "SEV-2", "SEV-3", "SEV-4"}


def test_the_policy_adds_and_moves_words(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[severity_aliases]\nSEV-1 = "P1"\nmajor = "p2"\n[teams]\ncheckout = "pay"\n')
    policy = load_policy(path)
    assert policy.severity_aliases == {
        "SEV-1": Severity.P1,
        "SEV-2": Severity.P1,
        "SEV-3": Severity.P2,
        "SEV-4": Severity.P3,
        "MAJOR": Severity.P2,
    }
    assert canonical_severity("Major", policy.severity_aliases) is Severity.P2
    assert policy.teams == {"checkout": "pay"}
    # Monitors' labels read the same words.
    assert policy.alerts.severity({"priority": "sev-1"}) == (Severity.P1, "sev-1")
    assert policy.alerts.severity({"severity": "MAJOR"}) == (Severity.P2, "MAJOR")
    assert policy.alerts.severity({"severity": "critical"}) == (Severity.P1, "critical")
    assert DEFAULT_POLICY.alerts.severity({"priority": "SEV-2"}) == (Severity.P1, "SEV-2")
    assert DEFAULT_POLICY.teams == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[severity_aliases]\nP1 = "P0"\n', "severity_aliases.P1: P0..P4 are the severities"),
        ('[severity_aliases]\nSEV-1 = "P9"\n', "severity_aliases.SEV-1: not a severity"),
        ("[severity_aliases]\nSEV-1 = 0\n", "severity_aliases.SEV-1: not a severity"),
        ('severity_aliases = "SEV-1"\n', "severity_aliases: expected a table"),
        ('[teams]\ncheckout = ""\n', "teams.checkout: expected a team name"),
        ('[teams]\ncheckout = ["a"]\n', "teams.checkout: expected a team name"),
        ("teams = 3\n", "teams: expected a table"),
    ],
)
def test_bad_sections_are_policy_errors_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace(".", r"\.")):
        load_policy(path)
    with pytest.raises(ValueError):
        parse_severity_aliases({"": "P0"})


def _event(**fields: Any) -> bytes:
    envelope = {
        "event_id": "e1",
        "incident_id": "INC-1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "actor": "probe",
        "source": "synthetic",
    }
    return json.dumps(envelope | fields).encode()


def test_producer_events_decode_to_the_severity() -> None:
    declared = decode_aliased(_event(type="incident.declared", title="t", severity="SEV-2"))
    assert isinstance(declared, IncidentDeclared) and declared.severity is Severity.P1
    changed = decode_aliased(
        _event(type="incident.severity_changed", **{"from": "sev-1", "to": "SEV-4"})
    )
    assert isinstance(changed, IncidentSeverityChanged)
    assert (changed.from_, changed.to) == (Severity.P0, Severity.P3)
    custom = {"CRITICAL": Severity.P0}
    assert decode_aliased(_event(type="incident.declared", title="t", severity="critical"), custom)


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"severity": "SEV-9"}, "Invalid enum value 'SEV-9' - at `$.severity`"),
        (
            {"severity": "SEV-1", "category": "SEV-1"},
            "Invalid enum value 'SEV-1' - at `$.category`",
        ),
        ({"severity": "SEV-1", "title": 3}, "Expected `str`, got `int` - at `$.title`"),
    ],
)
def test_what_no_alias_explains_is_refused_as_before(fields: dict[str, Any], refusal: str) -> None:
    with pytest.raises(SchemaError) as refused:
        decode_aliased(_event(type="incident.declared", **({"title": "t"} | fields)))
    assert str(refused.value) == refusal


@pytest.mark.parametrize(
    ("word", "phase"),
    [
        ("mitigating", Phase.MITIGATION),
        ("Mitigating", Phase.MITIGATION),
        ("mitigation", Phase.MITIGATION),
        ("triage", Phase.TRIAGE),
        ("validating", Phase.VALIDATION),
        ("investigating", None),  # a status
        ("resolved", None),  # a status and a phase: the status wins
        ("bogus", None),
    ],
)
def test_phase_words(word: str, phase: Phase | None) -> None:
    assert phase_meant(word) is phase
