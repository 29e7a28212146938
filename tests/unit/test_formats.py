"""services.formats: real Alertmanager and PagerDuty bodies -> observations; bad ones refused."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.schema import EvidenceKind, Severity, Source
from services.formats.alertmanager import parse_alertmanager
from services.formats.observation import AlertObservation, WebhookError, severity_from_labels
from services.formats.pagerduty import (
    PagerDutyAck,
    PagerDutyChange,
    PagerDutyError,
    parse_change,
    parse_pagerduty,
    scoped_key,
    sender,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EVENT_ID = re.compile(r"^[!-.0-~]{1,120}$")
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", **labels},
        "annotations": {"summary": "Disk almost full"},
        "startsAt": "2026-11-23T13:00:00.5+01:00",
        "endsAt": "2026-11-23T13:30:00.123456789Z"
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.invalid/graph",
        "fingerprint": f"fp-{status}",
    }


def am_payload(*alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "alerts": list(alerts),
        **extra,
    }


def am(data: object) -> list[AlertObservation]:
    return parse_alertmanager(body(data), NOW)


def pd(data: object) -> AlertObservation | PagerDutyAck:
    return parse_pagerduty(body(data), NOW)


def pd_errors(data: object) -> list[str]:
    with pytest.raises(PagerDutyError) as info:
        pd(data)
    assert info.value.errors
    return info.value.errors


# --- Alertmanager -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_parses(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    parse = parse_alertmanager if name.startswith("alertmanager") else parse_pagerduty
    result = parse(raw, NOW)
    for item in result if isinstance(result, list) else [result]:
        assert EVENT_ID.match(item.event_id)
        assert item.occurred_at.tzinfo is UTC


def test_firing_fixture_gives_one_firing_observation_per_alert() -> None:
    raw = load("alertmanager_firing.json")
    observations = parse_alertmanager(body(raw), NOW)
    assert len(observations) == 2
    assert [o.fingerprint for o in observations] == [a["fingerprint"] for a in raw["alerts"]]
    for obs, sent in zip(observations, raw["alerts"], strict=True):
        assert obs.firing
        assert obs.key == obs.group_key == raw["groupKey"]
        assert (obs.severity, obs.severity_label) == (Severity.P1, "critical")
        assert obs.ends_at is None
        assert obs.starts_at is not None and obs.starts_at.tzinfo is UTC
        assert obs.occurred_at == obs.starts_at
        assert obs.title == f"{sent['labels']['alertname']}: {sent['annotations']['summary']}"
        assert obs.summary.startswith(sent["annotations"]["summary"])
        assert obs.services == ("checkout",)
        assert [(link.uri, link.kind) for link in obs.links] == [
            (sent["annotations"]["runbook_url"], EvidenceKind.RUNBOOK),
            (sent["generatorURL"], EvidenceKind.METRICS),
        ]
        assert obs.source is Source.ALERTMANAGER
        assert obs.event_id.startswith("am-")
    assert len({o.event_id for o in observations}) == 2


def test_resolved_fixture_gives_resolved_observations_with_ends_at() -> None:
    firing = parse_alertmanager((FIXTURES / "alertmanager_firing.json").read_bytes(), NOW)
    resolved = parse_alertmanager((FIXTURES / "alertmanager_resolved.json").read_bytes(), NOW)
    assert [o.fingerprint for o in resolved] == [o.fingerprint for o in firing]
    for obs in resolved:
        assert not obs.firing
        assert obs.ends_at is not None and obs.ends_at.tzinfo is UTC
        assert obs.starts_at is not None and obs.ends_at > obs.starts_at
        assert obs.occurred_at == obs.ends_at
    assert not {o.event_id for o in resolved} & {o.event_id for o in firing}


def test_redelivery_gives_identical_event_ids() -> None:
    raw = (FIXTURES / "alertmanager_firing.json").read_bytes()
    first = parse_alertmanager(raw, NOW)
    again = parse_alertmanager(raw, NOW + timedelta(minutes=5))
    assert [o.event_id for o in first] == [o.event_id for o in again]


def test_a_later_refire_gets_new_event_ids() -> None:
    before = am(am_payload(alert()))
    later = {**alert(), "startsAt": "2026-11-23T15:00:00Z"}
    assert am(am_payload(later))[0].event_id != before[0].event_id


def test_a_resolve_with_another_end_gets_another_event_id() -> None:
    # Two resolves of one occurrence that end at different times are two facts; the same
    # resolve delivered twice is one.
    resolved = alert("resolved")
    again = am(am_payload(resolved))[0].event_id
    assert am(am_payload(resolved))[0].event_id == again
    later = {**resolved, "endsAt": "2026-11-23T13:45:00Z"}
    assert am(am_payload(later))[0].event_id != again


def test_grafana_style_extra_fields_are_ignored() -> None:
    raw = load("alertmanager_firing.json")
    raw |= {"orgId": 1, "title": "[FIRING:2]", "state": "alerting", "message": "x", "extra": {}}
    for sent in raw["alerts"]:
        sent |= {"silenceURL": "http://g/s", "dashboardURL": "", "values": {"A": 0.07}}
    assert [o.firing for o in am(raw)] == [True, True]


def test_a_mixed_post_reads_each_alert_by_its_own_status() -> None:
    fired, resolved = am(am_payload(alert("firing"), alert("resolved"), status="firing"))
    assert (fired.firing, fired.ends_at) == (True, None)
    assert not resolved.firing
    assert resolved.ends_at == datetime(2026, 11, 23, 13, 30, 0, 123457, tzinfo=UTC)
    # fractional seconds of any length, offsets converted to UTC
    assert fired.starts_at == datetime(2026, 11, 23, 12, 0, 0, 500000, tzinfo=UTC)
    assert fired.title == "DiskFull: Disk almost full"


def test_missing_fingerprint_and_times_fall_back_deterministically() -> None:
    bare = {"status": "resolved", "labels": {"alertname": "X", "job": "api"}}
    first, again = am(am_payload(bare)), am(am_payload(bare))
    assert first[0].fingerprint == again[0].fingerprint != ""
    assert first[0].event_id == again[0].event_id
    assert first[0].occurred_at == NOW
    assert first[0].severity is Severity.P3


def test_long_values_are_cut_to_the_log_limits() -> None:
    long = {**alert(service="s" * 5000), "annotations": {"summary": "y" * 20000}}
    (obs,) = am(am_payload(long))
    assert len(obs.title) == 300
    assert len(obs.labels["service"]) == 4096
    assert obs.services == ("s" * 256,)
    assert len(obs.summary) <= 16 * 1024


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (am_payload(alert(), version="3"), "version"),
        (am_payload(alert(), version=4), "version"),
        ({k: v for k, v in am_payload(alert()).items() if k != "version"}, "version"),
        ({k: v for k, v in am_payload(alert()).items() if k != "groupKey"}, "groupKey"),
        (am_payload(alert(), groupKey=""), "groupKey"),
        ({"version": "4", "groupKey": "g"}, "alerts"),
        (am_payload(alert(), alerts={}), "alerts"),
        (am_payload({**alert(), "status": "pending"}), "alerts[0].status"),
        (am_payload(alert(), {**alert(), "status": None}), "alerts[1].status"),
        (am_payload({**alert(), "startsAt": "yesterday"}), "alerts[0].startsAt"),
        (am_payload({**alert(), "labels": {"a": 1}}), "alerts[0].labels"),
        (am_payload(alert(), truncatedAlerts="many"), "truncatedAlerts"),
        ([], "body"),
    ],
)
def test_invalid_alertmanager_payloads_name_the_field(data: object, field: str) -> None:
    with pytest.raises(WebhookError) as info:
        am(data)
    assert info.value.field.startswith(field)
    assert str(info.value) == f"{info.value.field}: {info.value.detail}"


def test_only_gos_zero_time_means_no_time() -> None:
    """`0001-01-01T00:00:00Z` is Go's zero time (a firing alert's endsAt): no time given. Any
    other time before year 1 in UTC is out of range, not silently 'no time'."""
    [fired] = am(am_payload(alert()))
    assert fired.ends_at is None
    with pytest.raises(WebhookError, match="out of range in UTC") as info:
        am(am_payload({**alert(), "startsAt": "0001-01-01T00:00:00+00:01"}))
    assert info.value.field == "alerts[0].startsAt"


def test_malformed_json_is_a_webhook_error() -> None:
    with pytest.raises(WebhookError, match="malformed JSON") as info:
        parse_alertmanager(b'{"version": "4", ', NOW)
    assert info.value.field == "body"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"priority": "P0", "severity": "critical"}, (Severity.P0, "P0")),
        ({"priority": "p2", "severity": "info"}, (Severity.P2, "p2")),
        ({"priority": "urgent", "severity": "info"}, (Severity.P4, "info")),
        ({"severity": "critical"}, (Severity.P1, "critical")),
        ({"severity": "error"}, (Severity.P2, "error")),
        ({"severity": "High"}, (Severity.P2, "High")),
        ({"severity": "warning"}, (Severity.P3, "warning")),
        ({"severity": "info"}, (Severity.P4, "info")),
        ({"severity": "page"}, (Severity.P3, "page")),
        ({}, (Severity.P3, None)),
    ],
)
def test_severity_from_labels(
    labels: dict[str, str], expected: tuple[Severity, str | None]
) -> None:
    assert severity_from_labels(labels) == expected


def test_priority_label_beats_severity_in_a_payload() -> None:
    (obs,) = am(am_payload(alert(priority="P0", severity="warning")))
    assert (obs.severity, obs.severity_label) == (Severity.P0, "P0")


# --- PagerDuty ----------------------------------------------------------------------------


def test_pagerduty_trigger_fixture() -> None:
    raw = load("pagerduty_trigger.json")
    obs = pd(raw)
    assert isinstance(obs, AlertObservation)
    assert obs.firing
    assert obs.dedup_key == obs.fingerprint == raw["dedup_key"]
    assert obs.key == scoped_key(raw["routing_key"], raw["dedup_key"])
    assert json.loads(obs.key) == [sender(raw["routing_key"]), raw["dedup_key"]]
    assert (obs.severity, obs.severity_label) == (Severity.P1, "critical")
    assert obs.source is Source.PAGERDUTY
    assert obs.title == raw["payload"]["summary"]
    assert obs.services == ("checkout-api", "checkout")
    assert [(link.uri, link.kind, link.description) for link in obs.links] == [
        (raw["links"][0]["href"], EvidenceKind.LINK, raw["links"][0]["text"])
    ]
    assert obs.annotations["error_ratio"] == "0.053"
    assert "instance: checkout-1:8080" in obs.summary
    assert obs.starts_at is not None and obs.starts_at.tzinfo is UTC
    assert obs.occurred_at == obs.starts_at
    # With tokens on the routing key is a producer's token: nothing recorded may hold it.
    assert raw["routing_key"] not in msgspec.json.encode(obs).decode()
    assert obs.event_id.startswith("pd-") and EVENT_ID.match(obs.event_id)


def test_pagerduty_acknowledge_and_resolve_fixtures() -> None:
    raw = load("pagerduty_acknowledge.json")
    ack = pd(raw)
    assert isinstance(ack, PagerDutyAck)
    assert ack.dedup_key == raw["dedup_key"]
    assert ack.key == scoped_key(raw["routing_key"], raw["dedup_key"])
    assert ack.occurred_at == NOW
    resolved = pd(load("pagerduty_resolve.json"))
    assert isinstance(resolved, AlertObservation)
    assert not resolved.firing
    assert resolved.dedup_key == resolved.fingerprint == raw["dedup_key"]
    assert resolved.key == ack.key == pd(load("pagerduty_trigger.json")).key
    assert resolved.ends_at == resolved.occurred_at == NOW
    assert len({ack.event_id, resolved.event_id, pd(load("pagerduty_trigger.json")).event_id}) == 3


def test_a_retried_pagerduty_post_gets_the_same_event_id() -> None:
    raw = (FIXTURES / "pagerduty_trigger.json").read_bytes()
    first = parse_pagerduty(raw, NOW)
    again = parse_pagerduty(raw, NOW + timedelta(seconds=30))
    assert first.event_id == again.event_id


def test_trigger_without_dedup_key_gets_a_deterministic_one() -> None:
    raw = {k: v for k, v in load("pagerduty_trigger.json").items() if k != "dedup_key"}
    first, again = pd(raw), pd(raw)
    assert isinstance(first, AlertObservation) and isinstance(again, AlertObservation)
    assert first.key == again.key and first.dedup_key == again.dedup_key
    assert first.dedup_key is not None and re.fullmatch(r"[0-9a-f]{32}", first.dedup_key)
    assert first.key == scoped_key(raw["routing_key"], first.dedup_key)
    assert first.event_id == again.event_id
    other = {**raw, "payload": {**raw["payload"], "summary": "something else"}}
    assert pd(other).key != first.key
    # The same body from another sender is another event with a key of its own.
    elsewhere = pd({**raw, "routing_key": "X" * 32})
    assert isinstance(elsewhere, AlertObservation)
    assert elsewhere.dedup_key != first.dedup_key and elsewhere.key != first.key


@pytest.mark.parametrize("name", ["pagerduty_trigger.json", "pagerduty_acknowledge.json"])
def test_pagerduty_keys_are_scoped_by_routing_key(name: str) -> None:
    """Two senders with the same dedup_key: two correlation keys, the dedup_key kept as sent."""
    raw = load(name)
    mine, theirs = pd(raw), pd({**raw, "routing_key": "0" * 32})
    assert mine.key != theirs.key
    assert mine.dedup_key == theirs.dedup_key == raw["dedup_key"]
    assert mine.event_id != theirs.event_id
    assert pd(raw).key == mine.key  # and the same sender's again: the same key


def test_pagerduty_links_images_and_client_url_are_evidence_links() -> None:
    raw = {
        **load("pagerduty_trigger.json"),
        "images": [
            {"src": "https://graphs.example.invalid/5xx.png", "alt": "5xx rate"},
            {"src": "ftp://not.a.web.link/x.png"},
        ],
        "client": "Prometheus",
        "client_url": "https://prometheus.example.invalid/alerts",
    }
    obs = pd(raw)
    assert isinstance(obs, AlertObservation)
    assert [(link.uri, link.kind, link.description) for link in obs.links] == [
        ("https://runbooks.example.invalid/checkout-5xx", EvidenceKind.LINK, "Runbook"),
        ("https://graphs.example.invalid/5xx.png", EvidenceKind.IMAGE, "5xx rate"),
        ("https://prometheus.example.invalid/alerts", EvidenceKind.LINK, "Prometheus"),
    ]
    assert obs.generator_url == raw["client_url"]


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def with_payload(**changes: Any) -> dict[str, Any]:
    raw = load("pagerduty_trigger.json")
    return {**raw, "payload": {**raw["payload"], **changes}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (without(load("pagerduty_trigger.json"), "routing_key"), "'routing_key'"),
        ({**load("pagerduty_trigger.json"), "routing_key": "short"}, "'routing_key'"),
        (with_payload(severity="fatal"), "'payload.severity'"),
        (with_payload(summary=""), "'payload.summary'"),
        (with_payload(summary="x" * 1025), "'payload.summary'"),
        (without(with_payload(), "payload"), "'payload'"),
        (with_payload(source="  "), "'payload.source'"),
        (with_payload(timestamp="soon"), "'payload.timestamp'"),
        (with_payload(summary=42), "'payload.summary'"),
        (without(load("pagerduty_acknowledge.json"), "dedup_key"), "'dedup_key'"),
        (without(load("pagerduty_resolve.json"), "dedup_key"), "'dedup_key'"),
        ({**load("pagerduty_trigger.json"), "dedup_key": "d" * 256}, "'dedup_key'"),
        ({**load("pagerduty_trigger.json"), "event_action": "snooze"}, "'event_action'"),
        (without(load("pagerduty_trigger.json"), "event_action"), "'event_action'"),
        ({**load("pagerduty_trigger.json"), "links": [{"text": "no href"}]}, "'links[0].href'"),
    ],
)
def test_invalid_pagerduty_events_name_the_field(data: dict[str, Any], field: str) -> None:
    assert any(field in error for error in pd_errors(data))


def test_pagerduty_reports_every_problem_at_once() -> None:
    errors = pd_errors({"event_action": "trigger", "payload": {"severity": "fatal"}})
    assert len(errors) == 4
    assert "'event_action' must be one of trigger, acknowledge, resolve" in pd_errors({})


def test_pagerduty_malformed_json() -> None:
    with pytest.raises(PagerDutyError) as info:
        parse_pagerduty(b"{nope", NOW)
    assert info.value.errors[0].startswith("body is not valid JSON")
    assert str(info.value).startswith("Event object is invalid")


# --- PagerDuty change events -------------------------------------------------------------

ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


def change_body(**payload: Any) -> dict[str, Any]:
    """A change event as PagerDuty's "Send a Change Event" documents it."""
    return {
        "routing_key": ROUTING_KEY,
        "payload": {
            "summary": "Build #42 deployed checkout-api v1.8.3",
            "source": "ci.example.invalid",
            "timestamp": "2026-11-23T13:02:00.000Z",
            "custom_details": {"build": 42, "commit": "8670ecebcfdd"},
            **payload,
        },
        "links": [{"href": "https://ci.example.invalid/builds/42", "text": "Build #42"}],
    }


def change(data: object, at: datetime = NOW) -> PagerDutyChange:
    return parse_change(body(data), at)


def change_errors(data: object) -> list[str]:
    with pytest.raises(PagerDutyError) as info:
        change(data)
    assert info.value.errors
    return info.value.errors


def test_a_change_event_becomes_a_change() -> None:
    raw = change_body()
    found = change(raw)
    assert found.summary == raw["payload"]["summary"]
    assert found.host == "ci.example.invalid"
    assert found.occurred_at == datetime(2026, 11, 23, 13, 2, tzinfo=UTC)
    assert found.timestamped
    assert found.custom_details == {"build": 42, "commit": "8670ecebcfdd"}
    assert [(link.href, link.text) for link in found.links] == [
        ("https://ci.example.invalid/builds/42", "Build #42")
    ]
    assert found.sender == sender(ROUTING_KEY)
    assert found.change_id.startswith("~change-") and EVENT_ID.match(found.change_id)
    assert ROUTING_KEY not in msgspec.json.encode(found).decode()


def test_a_retried_change_is_the_same_change_and_another_sender_s_is_not() -> None:
    raw = change_body()
    first, later = change(raw), change(raw, NOW + timedelta(minutes=30))
    assert first == later
    assert change({**raw, "routing_key": "0" * 32}).change_id != first.change_id
    assert change(change_body(summary="Build #43 deployed")).change_id != first.change_id


def test_a_change_without_timestamp_happened_when_it_reached_us() -> None:
    raw = change_body()
    del raw["payload"]["timestamp"]
    found = change(raw)
    assert found.occurred_at == NOW and not found.timestamped
    assert change(raw, NOW + timedelta(seconds=5)).change_id == found.change_id
    naive = change(change_body(timestamp="2026-11-23T13:02:00"))
    assert naive.occurred_at == datetime(2026, 11, 23, 13, 2, tzinfo=UTC)
    offset = change(change_body(timestamp="2026-11-23T14:02:00+01:00"))
    assert offset.occurred_at == naive.occurred_at and offset.occurred_at.tzinfo is UTC


def test_a_change_keeps_only_whole_web_links() -> None:
    raw = change_body()
    raw["links"] += [{"href": "javascript:alert(1)"}, {"href": "https://x.invalid/" + "a" * 3000}]
    assert [link.href for link in change(raw).links] == ["https://ci.example.invalid/builds/42"]
    assert change({k: v for k, v in raw.items() if k != "links"}).links == ()
    # Images (PagerDuty's client sends them with change events too) are links as well.
    pictured = {**raw, "images": [{"src": "https://g.invalid/p.png", "alt": "p99"}]}
    assert [(x.href, x.text) for x in change(pictured).links][-1] == (
        "https://g.invalid/p.png",
        "p99",
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (without(change_body(), "routing_key"), "'routing_key'"),
        ({**change_body(), "routing_key": "short"}, "'routing_key'"),
        (without(change_body(), "payload"), "'payload'"),
        (change_body(summary=""), "'payload.summary'"),
        (change_body(summary="  "), "'payload.summary'"),
        (change_body(summary="x" * 1025), "'payload.summary'"),
        (change_body(summary=7), "'payload.summary'"),
        (change_body(source="s" * 1025), "'payload.source'"),
        (change_body(timestamp="yesterday"), "'payload.timestamp'"),
        (change_body(timestamp="2026-11-23T15:00:00Z"), "'payload.timestamp'"),  # the future
        (change_body(custom_details={"blob": "x" * 70_000}), "'payload'"),
        ({**change_body(), "links": [{"text": "no href"}]}, "'links[0].href'"),
        ({**change_body(), "links": [{"href": " "}]}, "'links[0].href'"),
        ({**change_body(), "links": "https://x.invalid"}, "'links'"),
    ],
)
def test_invalid_change_events_name_the_field(data: dict[str, Any], field: str) -> None:
    assert any(field in error for error in change_errors(data))


@pytest.mark.parametrize("garbage", [b"{nope", b"[1, 2]", b"\xff\xfe", b"null", b'"text"', b""])
def test_garbage_change_bodies_are_invalid_events(garbage: bytes) -> None:
    with pytest.raises(PagerDutyError) as info:
        parse_change(garbage, NOW)
    assert info.value.errors and str(info.value).startswith("Event object is invalid")


# --- Property: any input is either parsed or refused with our own error --------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
TIMES = st.sampled_from(
    ["0001-01-01T00:00:00Z", "2026-11-23T13:13:05.1Z", "9999-12-31T23:00:00-23:00"]
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid, sometimes any JSON at all."""
    return st.integers(0, 9).flatmap(lambda n: JSON if n == 0 else valid)


LABELS = st.dictionaries(
    st.sampled_from(["alertname", "severity", "priority", "service"]), st.text()
)
ALERTS = st.fixed_dictionaries(
    {"status": maybe(st.sampled_from(["firing", "resolved"]))},
    optional={
        "labels": maybe(LABELS),
        "annotations": maybe(st.dictionaries(st.text(), st.text())),
        "startsAt": maybe(TIMES),
        "endsAt": maybe(TIMES),
        "fingerprint": maybe(st.text()),
        "generatorURL": maybe(st.text()),
    },
)
AM_LIKE = st.fixed_dictionaries(
    {"version": maybe(st.just("4")), "groupKey": maybe(st.text(min_size=1))},
    optional={
        "alerts": maybe(st.lists(ALERTS, max_size=3)),
        "truncatedAlerts": maybe(st.integers()),
    },
)
PD_PAYLOADS = st.fixed_dictionaries(
    {
        "summary": maybe(st.text(min_size=1)),
        "source": maybe(st.text(min_size=1)),
        "severity": maybe(st.sampled_from(["critical", "error", "warning", "info", "bad"])),
    },
    optional={
        "timestamp": maybe(TIMES),
        "component": maybe(st.text()),
        "group": maybe(st.text()),
        "class": maybe(st.text()),
        "custom_details": JSON,
    },
)
PD_LIKE = st.fixed_dictionaries(
    {
        "routing_key": maybe(st.text(min_size=32, max_size=32)),
        "event_action": maybe(st.sampled_from(["trigger", "acknowledge", "resolve"])),
    },
    optional={
        "dedup_key": maybe(st.text()),
        "payload": maybe(PD_PAYLOADS),
        "links": maybe(st.lists(st.fixed_dictionaries({"href": st.text()}))),
        "client_url": maybe(st.text()),
    },
)


def check(result: object) -> None:
    for item in result if isinstance(result, list) else [result]:
        assert isinstance(item, AlertObservation | PagerDutyAck)
        assert EVENT_ID.match(item.event_id)
        assert item.occurred_at.tzinfo is UTC
        if isinstance(item, AlertObservation):
            assert 1 <= len(item.title) <= 300


@PROPERTY
@given(st.binary() | JSON.map(body) | AM_LIKE.map(body) | PD_LIKE.map(body))
def test_parsers_raise_only_their_own_errors(raw: bytes) -> None:
    with contextlib.suppress(WebhookError):
        check(parse_alertmanager(raw, NOW))
    with contextlib.suppress(PagerDutyError):
        check(parse_pagerduty(raw, NOW))
    with contextlib.suppress(PagerDutyError):
        found = parse_change(raw, NOW)
        assert EVENT_ID.match(found.change_id) and 1 <= len(found.summary) <= 1024
        assert found.occurred_at.tzinfo is UTC


PD_CHANGE_LIKE = st.fixed_dictionaries(
    {"routing_key": maybe(st.text(min_size=32, max_size=32))},
    optional={
        "payload": maybe(
            st.fixed_dictionaries(
                {"summary": maybe(st.text(min_size=1))},
                optional={
                    "source": maybe(st.text()),
                    "timestamp": maybe(TIMES),
                    "custom_details": JSON,
                },
            )
        ),
        "links": maybe(st.lists(st.fixed_dictionaries({"href": st.text()}))),
    },
)


@PROPERTY
@given(PD_CHANGE_LIKE.map(body))
def test_change_parser_raises_only_its_own_error(raw: bytes) -> None:
    with contextlib.suppress(PagerDutyError):
        found = parse_change(raw, NOW)
        assert EVENT_ID.match(found.change_id) and found.summary.strip()
        assert found.occurred_at.tzinfo is UTC
