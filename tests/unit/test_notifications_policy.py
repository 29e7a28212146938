"""Notification routes as policy data, and the pure parts of the notifier: what is due, the
ids of deliveries, the Slack format, the backoff."""

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.notifications import (
    BREACH_KINDS,
    DEFAULT_EVENTS,
    OBLIGATIONS,
    Route,
    RouteKind,
    Secret,
    breach_obligation,
    parse_notifications,
)
from events.policy import DEFAULT_POLICY, PolicyError, load_policy
from events.records import Stored
from events.schema import IncidentDeclared, Severity, Source
from projections.breaches import KINDS
from services.config import ConfigError
from services.notify import obligations, slack
from services.notify.deliver import Backoff
from services.notify.notifier import resolve

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SECRET_URL = "https://hooks.slack.com/services/T000/B000/verysecret"

EXAMPLE = f"""
[notifications]
base_url = "https://incidents.example.com/"
remind_before = "10m"
check_every = "15s"
retry_first = "2s"
retry_max = "10m"

[[notifications.routes]]
name = "incidents-channel"
kind = "slack"
url = "{SECRET_URL}"
target = "#incidents"
severities = ["P0", "p1"]

[[notifications.routes]]
name = "pager-bridge"
kind = "webhook"
url_env = "PAGER_BRIDGE_URL"
services = ["checkout", "payments"]
obligations = ["incident.declared", "ack_overdue", "next_update_due"]
headers = {{ Authorization = "Bearer abc" }}
"""


def test_the_documented_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE)
    settings = load_policy(path).notifications
    assert settings.base_url == "https://incidents.example.com"
    assert (settings.remind_before_s, settings.check_every_s) == (600.0, 15.0)
    assert (settings.retry_first_s, settings.retry_max_s) == (2.0, 600.0)
    channel, bridge = settings.routes
    assert channel.kind is RouteKind.SLACK and channel.target == "#incidents"
    assert channel.severities == frozenset({Severity.P0, Severity.P1})
    assert str(channel.url) == SECRET_URL
    assert channel.events == frozenset(DEFAULT_EVENTS) and channel.wants_obligations
    assert bridge.url is None and bridge.url_env == "PAGER_BRIDGE_URL"
    assert bridge.events == {"incident.declared"}
    assert dict(bridge.headers) == {"Authorization": "Bearer abc"}
    # Secrets never show in a repr: logs, tracebacks, the policy printed whole.
    assert "verysecret" not in repr(settings) and "Bearer abc" not in repr(settings)


def test_yaml_says_the_same(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "notifications:\n  routes:\n    - {name: ops, kind: webhook, url: 'http://127.0.0.1:9/x'}\n"
    )
    [route] = load_policy(path).notifications.routes
    assert (route.name, route.kind, str(route.url)) == (
        "ops",
        RouteKind.WEBHOOK,
        "http://127.0.0.1:9/x",
    )


def test_no_notifications_by_default() -> None:
    assert DEFAULT_POLICY.notifications.routes == ()


ROUTE = 'name = "r"\nkind = "webhook"\nurl = "https://example.com/hook/s3cr3t"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[notifications]\nroutes = "x"\n', "notifications.routes: expected a list"),
        ('[notifications]\ncolour = "red"\n', "notifications.colour: unknown key"),
        ('[notifications]\ncheck_every = "soon"\n', "notifications.check_every"),
        ("[notifications]\nretry_first = 0\n", "notifications.retry_first: expected a positive"),
        ('[notifications]\nretry_first = "1h"\n', "notifications.retry_first: longer than"),
        ('[notifications]\nbase_url = "ftp://x"\n', "notifications.base_url"),
        (
            '[[notifications.routes]]\nkind = "slack"\nurl = "https://x"\n',
            "routes[0].name: required",
        ),
        ('[[notifications.routes]]\nname = "r"\nurl = "https://x"\n', "routes[0].kind: required"),
        ('[[notifications.routes]]\nname = "a b"\n', "routes[0].name: 1 to 64 letters"),
        (
            '[[notifications.routes]]\nname = "r"\nkind = "email"\n',
            "routes[0].kind: expected 'slack'",
        ),
        ('[[notifications.routes]]\nname = "r"\nkind = "slack"\n', "routes[0].url: give the URL"),
        (ROUTE + 'url_env = "HOOK"\n', "routes[0].url: give the URL"),
        (ROUTE + 'severities = ["P9"]\n', r"routes[0].severities[0]: not a severity"),
        (ROUTE + "severities = []\n", "routes[0].severities: expected a non-empty list"),
        (ROUTE + 'obligations = ["ack_overdeu"]\n', r"routes[0].obligations[0]: 'ack_overdeu'"),
        (ROUTE + 'obligations = ["notification.sent"]\n', "neither an event type"),
        (ROUTE + 'channel = "#x"\n', "routes[0].channel: unknown key"),
        (ROUTE + 'headers = { "Bad Name" = "x" }\n', "routes[0].headers: 'Bad Name'"),
        (
            'name = "r"\nkind = "slack"\nurl = "https://x"\nheaders = { A = "b" }\n',
            "routes[0].headers: Slack incoming webhooks take no headers",
        ),
        (ROUTE + "[[notifications.routes]]\n" + ROUTE, "routes[1].name: 'r' is used"),
    ],
)
def test_bad_routes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    if not text.startswith("["):
        text = "[[notifications.routes]]\n" + text
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("url", ["not a url", "https://", "mailto:a@b", "https://h/ x"])
def test_a_bad_url_is_refused_without_being_shown(tmp_path: Path, url: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f'[[notifications.routes]]\nname = "r"\nkind = "slack"\nurl = "{url}"\n')
    with pytest.raises(PolicyError, match=r"routes\[0\]\.url: expected an http\(s\) URL") as info:
        load_policy(path)
    assert url not in str(info.value)


def test_every_breach_kind_is_an_obligation_routes_can_name() -> None:
    assert set(KINDS) <= set(BREACH_KINDS)
    assert {breach_obligation(kind) for kind in KINDS} <= set(OBLIGATIONS)
    assert breach_obligation("ack") == "ack_overdue"
    assert breach_obligation("next_update_missed") == "next_update_missed"
    assert breach_obligation("some_new_kind") == "some_new_kind_overdue"  # generic


def test_route_filters() -> None:
    route = _route(severities=["P0"], services=["checkout"], obligations=["ack_overdue"])
    assert route.wants("ack_overdue", "P0", ("checkout", "search"))
    assert not route.wants("ack_overdue", "P1", ("checkout",))
    assert not route.wants("ack_overdue", "P0", ("search",))
    assert not route.wants("incident.declared", "P0", ("checkout",))
    assert not route.wants("next_update_due", "P0", ("checkout",))
    everything = _route()
    assert everything.wants("incident.declared", None, ())
    assert everything.wants("some_new_kind_overdue", "P4", ())
    assert not everything.wants("alert.fired", "P0", ())  # not a default event


def _route(**fields: Any) -> Route:
    route = {"name": "r", "kind": "webhook", "url": "https://example.com/h", **fields}
    return parse_notifications({"routes": [route]}).routes[0]


def _breach(kind: str, due: datetime, target_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "incident_id": "INC-1",
        "severity": "P1",
        "kind": kind,
        "target_s": target_s,
        "actual_s": 1234.5,
        "due_at": due,
        "open": True,
        "level": None,
        "to": None,
        "item_id": None,
        **extra,
    }


def test_a_breach_is_one_notice_however_its_deadline_moves() -> None:
    # P1 (15 min) raised to P0 (5 min): the same missed acknowledgement, an earlier deadline.
    as_p1 = obligations.of_breach(_breach("ack", T0 + timedelta(minutes=15), 900.0))
    as_p0 = obligations.of_breach(_breach("ack", T0 + timedelta(minutes=5), 300.0, actual_s=9))
    assert as_p1.obligation == "ack_overdue"
    assert obligations.delivery_id("r", as_p1) == obligations.delivery_id("r", as_p0)
    assert obligations.delivery_id("r", as_p1) != obligations.delivery_id("other", as_p1)
    # Escalation levels all run from detection: the level tells them apart; so do items.
    first = obligations.of_breach(_breach("escalation", T0 + timedelta(minutes=5), 300.0, level=1))
    second = obligations.of_breach(
        _breach("escalation", T0 + timedelta(minutes=10), 600.0, level=2)
    )
    assert first.instance != second.instance
    item_a = obligations.of_breach(_breach("action_item_overdue", T0, 60.0, item_id="a"))
    item_b = obligations.of_breach(_breach("action_item_overdue", T0, 60.0, item_id="b"))
    assert item_a.instance != item_b.instance
    # Each gap of the update cadence is its own occurrence.
    gap_1 = obligations.of_breach(_breach("update_cadence", T0 + timedelta(minutes=30), 1800.0))
    gap_2 = obligations.of_breach(_breach("update_cadence", T0 + timedelta(minutes=70), 1800.0))
    assert gap_1.instance != gap_2.instance


def test_an_event_notice_is_its_event() -> None:
    event = IncidentDeclared(
        event_id="e1",
        incident_id="INC-1",
        occurred_at=T0,
        actor="alice",
        source=Source.CLI,
        title="Checkout 5xx",
        severity=Severity.P1,
    )
    notice = obligations.of_event(Stored(7, event, b""))
    assert (notice.obligation, notice.instance, notice.seq) == ("incident.declared", "e1", 7)
    delivery = obligations.delivery_id("r", notice)
    assert len(delivery) == 64 and obligations.record_id(delivery) == "~notify-" + delivery


def _incident(**fields: Any) -> dict[str, Any]:
    return {
        "incident_id": "INC-1",
        "severity": "P1",
        "detected_at": T0,
        "declared_at": T0,
        "comms_count": 0,
        "last_comms_at": None,
        "next_update_at": None,
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "due"),
    [
        ({}, T0 + timedelta(minutes=15)),  # P1's first comms: 15 min from detection
        (
            {"comms_count": 1, "last_comms_at": T0 + timedelta(minutes=5)},
            T0 + timedelta(minutes=35),  # P1's cadence: 30 min
        ),
        (
            {
                "comms_count": 1,
                "last_comms_at": T0 + timedelta(minutes=5),
                "next_update_at": T0 + timedelta(minutes=20),  # a promise before the cadence
            },
            T0 + timedelta(minutes=20),
        ),
        ({"severity": "P4"}, None),  # no targets
    ],
)
def test_next_update_due(fields: dict[str, Any], due: datetime | None) -> None:
    assert obligations.next_update_due(_incident(**fields), DEFAULT_POLICY) == due


def test_reminders_come_within_the_lead_only() -> None:
    incidents = [_incident()]  # due at T0 + 15 min
    at = [T0 + timedelta(minutes=m) for m in (9, 10, 14, 15, 16)]
    found = [obligations.reminders(incidents, DEFAULT_POLICY, now, 300.0) for now in at]
    assert [len(f) for f in found] == [0, 1, 1, 0, 0]
    assert found[1][0].instance == found[2][0].instance  # one reminder, however often checked
    assert found[1][0].due_at == T0 + timedelta(minutes=15)


def test_slack_escapes_what_incidents_say() -> None:
    notice = obligations.Notice(obligation="ack_overdue", incident_id="INC-1", instance="x")
    incident = {
        "incident_id": "INC-1",
        "title": "<!channel> & " + "x" * 300,
        "severity": "P0",
        "status": "investigating",
        "commander": "<@U123>",
        "services": ["a&b"],
        "impact": None,
        "next_update_at": None,
    }
    body = slack.body(notice, incident, "d" * 64, "https://incidents.example.com")
    header, _, facts, _ = body["blocks"]
    assert len(header["text"]["text"]) <= 150
    shown = " ".join(f["text"] for f in facts["fields"])
    assert "&lt;@U123&gt;" in shown and "<@U123>" not in shown and "a&amp;b" in shown
    assert "<https://incidents.example.com/incidents/INC-1|INC-1>" in shown


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 30.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (80, 30.0)]:
        pauses = [backoff.pause(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= p <= ceiling for p in pauses), (attempt, pauses)
        assert len(set(pauses)) > 1  # jittered


def test_secret_repr() -> None:
    assert (
        repr(Secret("https://x/y")) == "'<secret>'" and str(Secret("https://x/y")) == "https://x/y"
    )


def test_a_url_from_the_environment_is_read_at_start() -> None:
    routes = parse_notifications(
        {"routes": [{"name": "r", "kind": "slack", "url_env": "SLACK_INCIDENTS_URL"}]}
    ).routes
    urls = resolve(routes, {"SLACK_INCIDENTS_URL": SECRET_URL})
    assert urls == {"r": SECRET_URL}
    with pytest.raises(ConfigError, match=r"^SLACK_INCIDENTS_URL: route r ") as info:
        resolve(routes, {"SLACK_INCIDENTS_URL": "hooks.slack.com/no-scheme"})
    assert "no-scheme" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^SLACK_INCIDENTS_URL"):
        resolve(routes, {})
