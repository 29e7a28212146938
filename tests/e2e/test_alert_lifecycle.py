"""Alert lifecycles as the monitors mean them (issue 12): Alertmanager and PagerDuty resolves
resolve the incidents alerts opened, a repeat opens a new one, severity follows alerts upward,
links become evidence, the policy file decides; over real HTTP into a real log."""

import asyncio
import copy
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pagerduty
import pytest
import trustme
from tests_support import fixture_bytes

from events.incident import Incident, fold
from events.schema import (
    AnyEvent,
    EvidenceAttached,
    EvidenceKind,
    IncidentDeclared,
    IncidentResolved,
    IncidentSeverityChanged,
)
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

AM = "/v1/webhooks/alertmanager"
PD = "/v2/enqueue"
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


def alertmanager(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded


def one_alert(payload: dict[str, Any], status: str, **labels: str) -> dict[str, Any]:
    """The payload with only its first alert, in `status`, its labels changed."""
    body = copy.deepcopy(payload)
    alert = body["alerts"][0]
    alert["status"] = status
    alert["labels"] |= labels
    alert["fingerprint"] = "fp-" + "-".join(f"{k}={v}" for k, v in sorted(labels.items()))
    if status == "resolved":
        alert["endsAt"] = "2026-11-23T13:40:00Z"
    body["alerts"] = [alert]
    return body


async def events_of(service: Service, incident_id: str) -> list[AnyEvent]:
    return [s.event for s in (await service.store.load(incident_id)).events]


async def state_of(service: Service, incident_id: str) -> Incident:
    return fold(await events_of(service, incident_id))


def incident_ids(answer: httpx.Response) -> set[str]:
    assert answer.status_code in (200, 202), answer.text
    return {e["incident_id"] for e in answer.json()["events"]}


async def test_alertmanager_fire_resolve_fire_leaves_two_incidents_the_first_auto_resolved(
    http: httpx.AsyncClient, service: Service
) -> None:
    firing, resolved = (
        alertmanager("alertmanager_firing.json"),
        alertmanager("alertmanager_resolved.json"),
    )
    (first,) = incident_ids(await http.post(AM, json=firing))
    done = await http.post(AM, json=resolved)
    assert [e["type"] for e in done.json()["events"]] == [
        "alert.resolved",
        "alert.resolved",
        "incident.resolved",
    ]
    resolution = [e for e in await events_of(service, first) if isinstance(e, IncidentResolved)]
    assert len(resolution) == 1
    assert resolution[0].actor == "auto-resolve"
    assert "CheckoutHighErrorRate" in resolution[0].summary
    assert (await state_of(service, first)).is_resolved
    # A redelivery of the resolved notification changes nothing.
    again = await http.post(AM, json=resolved)
    assert all(e["duplicate"] for e in again.json()["events"])

    refired = copy.deepcopy(firing)
    for alert in refired["alerts"]:
        alert["startsAt"] = "2026-11-23T14:00:00Z"
    (second,) = incident_ids(await http.post(AM, json=refired))
    assert second != first
    assert not (await state_of(service, second)).is_resolved


async def test_urls_become_evidence_once_and_truncation_is_recorded(
    http: httpx.AsyncClient, service: Service
) -> None:
    firing = alertmanager("alertmanager_firing.json")
    firing["truncatedAlerts"] = 3
    firing["alerts"][0]["annotations"]["dashboard"] = "https://grafana.example.invalid/d/checkout"
    answer = await http.post(AM, json=firing)
    (incident_id,) = incident_ids(answer)
    seq = max(e["seq"] for e in answer.json()["events"])
    evidence = [e for e in await events_of(service, incident_id) if isinstance(e, EvidenceAttached)]
    # Both alerts carry the same runbook and graph: each is attached once.
    assert sorted((e.kind, e.uri) for e in evidence) == sorted(
        [
            (EvidenceKind.RUNBOOK, firing["alerts"][0]["annotations"]["runbook_url"]),
            (EvidenceKind.METRICS, firing["alerts"][0]["generatorURL"]),
            (EvidenceKind.DASHBOARD, "https://grafana.example.invalid/d/checkout"),
        ]
    )
    assert all(e.actor == "alertmanager" for e in evidence)
    assert (await state_of(service, incident_id)).alerts_truncated == 3
    timeline = (
        await http.get(f"/v1/incidents/{incident_id}/timeline", params={"wait_for": seq})
    ).json()
    assert {e["type"] for e in timeline["events"]} >= {"evidence.attached", "alert.fired"}


async def test_severity_follows_the_alerts_upward_never_down(
    http: httpx.AsyncClient, service: Service
) -> None:
    firing = alertmanager("alertmanager_firing.json")
    (incident_id,) = incident_ids(
        await http.post(AM, json=one_alert(firing, "firing", severity="warning"))
    )
    assert (await state_of(service, incident_id)).severity == "P3"
    await http.post(AM, json=one_alert(firing, "firing", severity="critical"))
    await http.post(AM, json=one_alert(firing, "firing", severity="info"))
    changes = [
        e for e in await events_of(service, incident_id) if isinstance(e, IncidentSeverityChanged)
    ]
    assert [(c.from_, c.to) for c in changes] == [("P3", "P1")]
    assert "critical" in changes[0].reason
    assert (await state_of(service, incident_id)).severity == "P1"


async def test_an_incident_a_responder_took_over_is_not_auto_resolved(
    http: httpx.AsyncClient, service: Service
) -> None:
    firing, resolved = (
        alertmanager("alertmanager_firing.json"),
        alertmanager("alertmanager_resolved.json"),
    )
    (incident_id,) = incident_ids(await http.post(AM, json=firing))
    ack = await http.post(f"/v1/incidents/{incident_id}/ack", json={"actor": "alice"})
    assert ack.status_code == 200, ack.text
    # An acknowledgement alone is not a take-over: naming a commander is.
    taken = await http.post(
        f"/v1/incidents/{incident_id}/roles",
        json={"role": "commander", "person": "alice", "actor": "alice"},
    )
    assert taken.status_code == 200, taken.text
    done = await http.post(AM, json=resolved)
    assert [e["type"] for e in done.json()["events"]] == ["alert.resolved", "alert.resolved"]
    state = await state_of(service, incident_id)
    assert state.taken_over and not state.is_resolved and not state.alerts_firing


@pytest.fixture
async def policed(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The service with a policy file: no auto-resolve but for P4, `team` labels mapped."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'auto_resolve = "never"\n'
        '[P4]\nauto_resolve = "alerts"\n'
        "[alerts]\n"
        'category_labels = ["team"]\n'
        '[alerts.severities]\ncritical = "P0"\n'
        '[alerts.categories]\npayments-dba = "data"\n'
    )
    config = Config(
        nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0, policy_file=policy
    )
    async with (
        running(config) as service,
        httpx.AsyncClient(base_url=service.http_url, timeout=10) as client,
    ):
        client.service = service  # type: ignore[attr-defined]
        yield client


async def test_the_policy_file_decides_severity_category_and_auto_resolve(
    policed: httpx.AsyncClient,
) -> None:
    service: Service = policed.service  # type: ignore[attr-defined]
    firing = alertmanager("alertmanager_firing.json")
    body = one_alert(firing, "firing", team="payments-dba")
    (incident_id,) = incident_ids(await policed.post(AM, json=body))
    state = await state_of(service, incident_id)
    assert (state.severity, state.category) == ("P0", "data")
    ended = one_alert(firing, "resolved", team="payments-dba")
    ended["groupKey"] = body["groupKey"]
    done = await policed.post(AM, json=ended)
    assert [e["type"] for e in done.json()["events"]] == ["alert.resolved"]
    assert not (await state_of(service, incident_id)).is_resolved

    info = one_alert(firing, "firing", severity="info")
    info["groupKey"] = '{}:{alertname="Info"}'
    (low,) = incident_ids(await policed.post(AM, json=info))
    info_done = one_alert(firing, "resolved", severity="info")
    info_done["groupKey"] = info["groupKey"]
    await policed.post(AM, json=info_done)
    assert (await state_of(service, low)).is_resolved  # P4: auto_resolve = "alerts"


def pd_event(action: str, dedup_key: str, severity: str = "error") -> dict[str, Any]:
    body: dict[str, Any] = json.loads(fixture_bytes("pagerduty_trigger.json"))
    body |= {"event_action": action, "dedup_key": dedup_key, "routing_key": ROUTING_KEY}
    body["payload"]["severity"] = severity
    if action != "trigger":
        del body["payload"]
    return body


async def test_pagerduty_trigger_ack_resolve_then_trigger_opens_a_new_incident(
    http: httpx.AsyncClient, service: Service
) -> None:
    assert (await http.post(PD, json=pd_event("trigger", "db-42"))).status_code == 202
    assert (await http.post(PD, json=pd_event("acknowledge", "db-42"))).status_code == 202
    # A re-trigger at a higher severity raises the incident's.
    assert (await http.post(PD, json=pd_event("trigger", "db-42", "critical"))).status_code == 202
    assert (await http.post(PD, json=pd_event("resolve", "db-42"))).status_code == 202
    assert (await http.post(PD, json=pd_event("trigger", "db-42"))).status_code == 202
    log = [s.event async for batch in service.store.read() for s in batch]
    ids = {e.incident_id for e in log if isinstance(e, IncidentDeclared)}
    states = {i: await state_of(service, i) for i in ids}
    assert len(states) == 2
    done = [s for s in states.values() if s.is_resolved]
    open_ = [s for s in states.values() if not s.is_resolved]
    assert len(done) == len(open_) == 1
    assert done[0].acknowledged_at is not None and done[0].severity == "P1"
    assert open_[0].acknowledged_at is None


@pytest.fixture
async def https(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, Path]]:
    """The service over HTTPS with a throw-away CA's certificate; yields it and the CA file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    config = Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        tls_cert=chain,
        tls_key=key,
    )
    async with running(config) as service:
        yield service, ca_file


async def test_the_official_pagerduty_client_over_https(https: tuple[Service, Path]) -> None:
    """PagerDuty's maintained client (it posts to https:// base URLs only): trigger,
    acknowledge, resolve leave one resolved incident; a second trigger opens a new one."""
    service, ca_file = https
    assert service.http_url.startswith("https://")
    client = pagerduty.EventsApiV2Client(
        ROUTING_KEY, base_url=service.http_url, verify=ssl.create_default_context(cafile=ca_file)
    )

    def flow() -> list[str]:
        with client:
            first = client.trigger("Checkout DB down", "db-1.prod", dedup_key="pd-client-1")
            acked = client.acknowledge(first)
            client.resolve(first)
            again = client.trigger("Checkout DB down", "db-1.prod", dedup_key="pd-client-1")
            return [first, acked, again]

    keys = await asyncio.to_thread(flow)
    assert keys == ["pd-client-1"] * 3
    log = [s.event async for batch in service.store.read() for s in batch]
    ids = sorted({e.incident_id for e in log if isinstance(e, IncidentDeclared)})
    states = [await state_of(service, i) for i in ids]
    assert sorted(s.is_resolved for s in states) == [False, True]
    resolved = next(s for s in states if s.is_resolved)
    assert resolved.acknowledged_at is not None
