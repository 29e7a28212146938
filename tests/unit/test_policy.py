"""The severity policy: DESIGN 8's default table, TOML/YAML overrides and the errors they raise."""

import subprocess
import sys
from pathlib import Path

import pytest

from events.durations import parse_duration
from events.policy import (
    DEFAULT_ALERT_RULES,
    DEFAULT_POLICY,
    NO_TARGETS,
    PolicyError,
    Targets,
    load_policy,
)
from events.schema import Category, Severity

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (
            Severity.P0,
            Targets(
                ack_s=5 * MIN,
                first_comms_s=15 * MIN,
                update_s=15 * MIN,
                resolve_s=2 * HOUR,
                postmortem_s=24 * HOUR,
                review_s=7 * DAY,  # runbook 002: review within a week
            ),
        ),
        (
            Severity.P1,
            Targets(
                ack_s=15 * MIN,
                first_comms_s=15 * MIN,
                update_s=30 * MIN,
                resolve_s=8 * HOUR,
                postmortem_s=48 * HOUR,
                review_s=7 * DAY,
            ),
        ),
        (
            Severity.P2,
            Targets(
                ack_s=HOUR,
                first_comms_s=HOUR,
                update_s=60 * MIN,
                resolve_s=24 * HOUR,
                postmortem_s=5 * DAY,
                review_s=7 * DAY,
            ),
        ),
        (
            Severity.P3,
            Targets(
                ack_s=4 * HOUR,
                first_comms_s=None,
                update_s=24 * HOUR,
                resolve_s=5 * DAY,
                postmortem_s=None,
            ),
        ),
        (Severity.P4, Targets()),
    ],
)
def test_default_table_is_design_8(severity: Severity, expected: Targets) -> None:
    assert DEFAULT_POLICY.for_severity(severity) == expected
    assert DEFAULT_POLICY.for_severity(severity.value) == expected


def test_missing_file_name_means_defaults() -> None:
    assert load_policy(None) is DEFAULT_POLICY


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300),
        ("2h", 7200),
        ("5d", 432000),
        ("1h30m", 5400),
        ("90s", 90),
        ("300", 300),
        ("15 min", 900),
        ("500ms", 0.5),
        ("1w", 604800),
        (" 2H ", 7200),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m5", "5 parsecs", "1h 30x", "-5m", "5m-", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_toml_overrides_fields_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'version = "acme-7"\n'
        '[P1]\nack = "10m"\nupdate = 1200\n'
        '[P3]\nupdate = "none"\n'
        '[p4]\nresolve = "30d"\n'
    )
    policy = load_policy(path)
    assert policy.version == "acme-7"
    p1 = DEFAULT_POLICY.for_severity(Severity.P1)
    assert policy.for_severity(Severity.P1) == Targets(
        ack_s=600,
        first_comms_s=p1.first_comms_s,
        update_s=1200,
        resolve_s=p1.resolve_s,
        postmortem_s=p1.postmortem_s,
        review_s=p1.review_s,
    )
    assert policy.for_severity(Severity.P3).update_s is None
    assert policy.for_severity(Severity.P3).ack_s == 4 * HOUR
    assert policy.for_severity(Severity.P4) == Targets(resolve_s=30 * DAY)
    assert policy.for_severity(Severity.P0) == DEFAULT_POLICY.for_severity(Severity.P0)


def test_yaml_overrides_and_versions_by_content(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("P0:\n  ack: 2m\n  postmortem: ~\nP2:\n  first_comms_s: 1800\n")
    policy = load_policy(path)
    assert policy.for_severity(Severity.P0).ack_s == 120
    assert policy.for_severity(Severity.P0).postmortem_s is None
    assert policy.for_severity(Severity.P2).first_comms_s == 1800
    assert policy.version.startswith("policy.yaml@")
    same = tmp_path / "other" / "policy.yaml"
    same.parent.mkdir()
    same.write_text(path.read_text())
    assert load_policy(same).version == policy.version
    same.write_text("P0:\n  ack: 3m\n")
    assert load_policy(same).version != policy.version


def test_empty_yaml_is_the_default_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert load_policy(path).targets == DEFAULT_POLICY.targets


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.toml", '[P1]\nack = "soon"\n', "P1.ack"),
        ("p.toml", "[P1]\nack = -5\n", "P1.ack: a target must be a positive"),
        ("p.toml", "[P1]\nack = 0\n", "P1.ack"),
        ("p.toml", "[P1]\nack = true\n", "P1.ack"),
        ("p.toml", '[P2]\nacknowledge = "5m"\n', "P2.acknowledge: unknown target"),
        ("p.toml", '[P9]\nack = "5m"\n', "P9: not a severity"),
        ("p.toml", 'P1 = "5m"\n', "P1: expected a table"),
        ("p.toml", "[P1\n", "not valid TOML"),
        ("p.yaml", "P1: [1, 2]\n", "P1: expected a table"),
        ("p.yaml", "P3:\n  update: {a: 1}\n", "P3.update"),
        ("p.yaml", "- P1\n", "a table of severities"),
        ("p.yaml", "P1: {ack: 5m\n", "not valid YAML"),
        ("p.yaml", "version: [1]\n", "version"),
        ("p.json", "{}", ".toml, .yaml or .yml"),
        ("p.toml", 'auto_resolve = "sometimes"\n', "auto_resolve: expected 'alerts' or 'never'"),
        ("p.toml", "[P1]\nauto_resolve = true\n", "P1.auto_resolve"),
        ("p.toml", '[alerts.severities]\ncritical = "P9"\n', "alerts.severities.critical"),
        ("p.toml", '[alerts.categories]\ndba = "db"\n', "alerts.categories.dba: not a category"),
        ("p.toml", '[alerts]\ncategory_labels = "team"\n', "alerts.category_labels"),
        ("p.toml", '[alerts]\ncolour = "red"\n', "alerts.colour: unknown key"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace(".", r"\.").replace("[", r"\[")) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "absent.toml")


def test_severity_without_targets_has_none() -> None:
    assert DEFAULT_POLICY.for_severity(Severity.P4) == NO_TARGETS


def test_policy_module_stays_pure() -> None:
    code = "import sys, events.policy\nprint('\\n'.join(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    )
    assert "events.policy" in loaded
    impure = {"duckdb", "nats", "faststream", "asyncio", "services", "projections", "socket"}
    assert not {name.split(".")[0] for name in loaded} & impure


def test_alerts_resolve_their_incidents_at_every_severity_by_default() -> None:
    assert DEFAULT_POLICY.auto_resolve == frozenset(Severity)


def test_auto_resolve_overall_then_per_severity(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('auto_resolve = "never"\n[P3]\nauto_resolve = "alerts"\n')
    assert load_policy(path).auto_resolve == {Severity.P3}
    path.write_text('[P0]\nauto_resolve = "never"\n')
    assert load_policy(path).auto_resolve == frozenset(Severity) - {Severity.P0}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"severity": "critical"}, (Severity.P1, "critical")),
        ({"severity": "CRITICAL", "priority": "p0"}, (Severity.P0, "p0")),
        ({"priority": "urgent", "severity": "warning"}, (Severity.P3, "warning")),
        ({"severity": "page"}, (Severity.P3, "page")),
        ({}, (Severity.P3, None)),
    ],
)
def test_default_alert_severities_are_design_7(
    labels: dict[str, str], expected: tuple[Severity, str | None]
) -> None:
    assert DEFAULT_ALERT_RULES.severity(labels) == expected


def test_alert_rules_from_a_file_merge_over_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "alerts:\n"
        "  severity_label: level\n"
        "  severities: {page: P0}\n"
        "  category_labels: [team, category]\n"
        "  categories: {payments-dba: data}\n"
        "  default_category: infrastructure\n"
    )
    rules = load_policy(path).alerts
    assert rules.severity({"level": "page"}) == (Severity.P0, "page")
    assert rules.severity({"level": "critical"}) == (Severity.P1, "critical")  # default kept
    assert rules.category({"team": "payments-dba"}) is Category.DATA
    assert rules.category({"team": "web", "category": "security"}) is Category.SECURITY
    assert rules.category({"team": "web"}) is Category.INFRASTRUCTURE
