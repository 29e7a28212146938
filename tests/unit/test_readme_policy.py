"""The README's "Policy file" section against the code: its complete example loads with
`load_policy` and means what it says, and every key the policy parser accepts is documented
there and used in the example (issue 13: "a Policy file reference with every key and a
complete example")."""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from events.escalation import EscalationLevel, Without
from events.notifications import Notifications, Route, RouteKind
from events.policy import FIELDS, AlertRules, Policy, PolicyError, load_policy, parse_policy
from events.schema import Category, Severity
from events.templates import CommsTemplate
from events.vocabulary import Audience, Channel

README = Path(__file__).resolve().parents[2] / "README.md"
_MIN = 60.0
_HOUR = 3600.0


def _section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _example() -> str:
    """The first TOML block of "Policy file": the complete example."""
    found = re.search(r"^```toml\n(.*?)^```$", _section("Policy file"), re.M | re.S)
    assert found is not None, 'no ```toml block under "## Policy file" in README.md'
    return found.group(1)


def _keys(struct: type[Any], leave_out: frozenset[str] = frozenset()) -> set[str]:
    """The keys a policy table takes, from the struct it is parsed into: the fields without
    their `_s` suffix (seconds), less those the file does not set."""
    fields: tuple[str, ...] = struct.__struct_fields__
    return {name.removesuffix("_s") for name in fields} - leave_out


def _top_level_keys() -> set[str]:
    """Every top-level key `parse_policy` accepts, as its own refusal of an unknown key lists
    them (`use P0..P4, 'version', 'auto_resolve', ...`); the severities are P0..P4."""
    with pytest.raises(PolicyError) as refused:
        parse_policy({"no-such-key": {}}, "v")
    named = set(re.findall(r"'([a-z_]+)'", str(refused.value)))
    assert named, f"cannot read the accepted keys from {refused.value}"
    return named | {severity.value for severity in Severity}


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("readme") / "policy.toml"
    path.write_text(_example(), encoding="utf-8")
    return load_policy(path)


def test_the_example_loads_and_its_targets_take_effect(policy: Policy) -> None:
    assert policy.version == "sre-2026-q4"
    p0, p1, p3 = (policy.for_severity(s) for s in (Severity.P0, Severity.P1, Severity.P3))
    assert (p0.ack_s, p0.review_s) == (5 * _MIN, 48 * _HOUR)
    assert (p1.ack_s, p1.update_s) == (10 * _MIN, 20 * _MIN)
    assert p1.resolve_s == 8 * _HOUR  # left out: the default
    assert (p3.first_comms_s, p3.postmortem_s) == (4 * _HOUR, None)
    assert Severity.P0 not in policy.auto_resolve  # its own "never" wins over "alerts"
    assert Severity.P1 in policy.auto_resolve


def test_the_example_alert_rules_take_effect(policy: Policy) -> None:
    rules = policy.alerts
    assert rules.severity({"severity": "page"}) == (Severity.P1, "page")
    assert rules.severity({"severity": "warning"})[0] is Severity.P3  # a default kept
    assert rules.category({"team": "payments-dba"}) is Category.DATA


def test_the_example_escalation_paths_take_effect(policy: Policy) -> None:
    p0 = policy.escalation.path(Severity.P0)
    assert [level.to for level in p0] == [
        "senior-sre",
        "engineering-manager",
        "vp-engineering",
        "executive-team",
    ]
    assert policy.escalation.level(Severity.P0, 4) == EscalationLevel(
        after_s=30 * _MIN, to="executive-team", without=Without.RESOLUTION
    )
    # Given as SEV-2: P1's path, its first level waiting for an acknowledgement by default.
    first = policy.escalation.level(Severity.P1, 1)
    assert first is not None and (first.to, first.without) == ("secondary-oncall", Without.ACK)
    assert policy.escalation.path(Severity.P2)  # left out: the default path
    assert policy.escalation.path(Severity.P3) == ()


def test_the_example_notifications_take_effect(policy: Policy) -> None:
    settings = policy.notifications
    assert settings.base_url == "https://incidents.example.com"
    assert (settings.remind_before_s, settings.retry_max_s) == (5 * _MIN, 5 * _MIN)
    slack, webhook = settings.routes
    assert (slack.name, slack.kind, slack.url_env) == (
        "incidents-channel",
        RouteKind.SLACK,
        "SLACK_INCIDENTS_URL",
    )
    assert slack.severities == frozenset({Severity.P0, Severity.P1})
    assert (webhook.name, webhook.kind) == ("ops-webhook", RouteKind.WEBHOOK)
    assert webhook.wants("ack_overdue", "P3", ())
    assert not webhook.wants("comms.sent", "P3", ())


def test_the_example_templates_aliases_and_teams_take_effect(policy: Policy) -> None:
    initial = policy.templates["initial"]
    assert initial.channel is Channel.WAR_ROOM
    assert "INCIDENT DETECTED" in initial.text  # a default keeps what the file leaves out
    brief = policy.templates["exec_brief"]
    assert (brief.audience, brief.channel) == (Audience.EXECUTIVES, Channel.EMAIL)
    assert policy.severity_aliases["SEV-0"] is Severity.P0
    assert policy.severity_aliases["MAJOR"] is Severity.P1
    assert policy.severity_aliases["SEV-1"] is Severity.P0  # the defaults stay
    assert policy.teams == {
        "checkout": "payments-team",
        "billing": "payments-team",
        "search": "discovery",
    }


def test_every_top_level_key_is_documented_and_in_the_example() -> None:
    section = _section("Policy file")
    accepted = _top_level_keys()
    severities = {severity.value for severity in Severity}
    # The policy's own fields are what those keys fill (`targets` holds the severities).
    assert accepted == _keys(Policy, frozenset({"targets"})) | severities
    assert "`P0` .. `P4`" in section  # the severity tables, documented as a range
    undocumented = {key for key in accepted - severities if f"`{key}`" not in section}
    assert not undocumented, f'README "Policy file" does not name {sorted(undocumented)}'
    unused = accepted - set(tomllib.loads(_example()))
    assert unused <= {"P2", "P4"}, f"the complete example leaves out {sorted(unused)}"


def test_every_key_of_every_table_is_documented_and_in_the_example() -> None:
    section = _section("Policy file")
    document = tomllib.loads(_example())
    paths = [path for path in document["escalation"].values() if isinstance(path, list)]
    used: dict[str, set[str]] = {
        "targets": {key for s in Severity for key in document.get(s.value, {})},
        "alerts": set(document["alerts"]),
        "escalation level": {key for path in paths for level in path for key in level},
        "notifications": set(document["notifications"]),
        "route": {key for route in document["notifications"]["routes"] for key in route},
        "template": {key for t in document["templates"].values() for key in t},
    }
    accepted: dict[str, set[str]] = {
        "targets": set(FIELDS) | {"auto_resolve"},
        # `severity_aliases` is copied in from the top-level table, not set under [alerts].
        "alerts": _keys(AlertRules, frozenset({"severity_aliases"})),
        "escalation level": _keys(EscalationLevel),
        "notifications": _keys(Notifications),
        "route": _keys(Route),
        "template": _keys(CommsTemplate, frozenset({"name"})),  # the name is the table's
    }
    for table, keys in accepted.items():
        undocumented = {key for key in keys if f"`{key}`" not in section}
        assert not undocumented, f'README "Policy file" does not name {table} keys {undocumented}'
        assert keys <= used[table], f"the example leaves out {table} keys {keys - used[table]}"
