"""Alertmanager and PagerDuty deliveries over real HTTP into the log, and correlation races."""

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.records import Stored
from events.schema import (
    AlertFired,
    AlertResolved,
    EvidenceAttached,
    IncidentAcknowledged,
    IncidentDeclared,
    IncidentResolved,
)
from events.store import EventStore
from services.bootstrap import Service, running
from services.config import Config
from services.formats.pagerduty import scoped_key
from services.natsserver import EmbeddedNatsServer

FIXTURES = Path(__file__).parents[1] / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


async def everything(store: EventStore) -> list[Stored]:
    return [s async for batch in store.read() for s in batch]


async def test_alertmanager_firing_opens_one_incident_and_resolved_closes_alerts(
    http: httpx.AsyncClient, service: Service
) -> None:
    firing, resolved = fixture("alertmanager_firing.json"), fixture("alertmanager_resolved.json")
    answer = await http.post("/v1/webhooks/alertmanager", json=firing)
    assert answer.status_code == 200, answer.text
    types = [e["type"] for e in answer.json()["events"]]
    # Each alert's links (generatorURL, runbook_url...) come with it as evidence.
    assert [t for t in types if t != "evidence.attached"] == [
        "incident.declared",
        "alert.fired",
        "alert.fired",
    ]
    assert "evidence.attached" in types
    incident_id = answer.json()["events"][0]["incident_id"]

    loaded = await service.store.load(incident_id)
    declared = loaded.events[0].event
    assert isinstance(declared, IncidentDeclared)
    assert declared.severity == "P1"  # severity=critical
    assert declared.services == ("checkout",)
    assert declared.correlation_id == firing["groupKey"]
    # Detected when the alert started, declared when it reached us: MTTD is the gap.
    assert declared.detected_at == datetime.fromisoformat(firing["alerts"][0]["startsAt"])
    assert declared.occurred_at > declared.detected_at
    fired = [s.event for s in loaded.events if isinstance(s.event, AlertFired)]
    assert {f.fingerprint for f in fired} == {a["fingerprint"] for a in firing["alerts"]}
    assert all(f.ends_at is None for f in fired)  # Go's zero time is not an end

    redelivered = await http.post("/v1/webhooks/alertmanager", json=firing)
    assert redelivered.status_code == 200
    assert all(e["duplicate"] for e in redelivered.json()["events"])

    done = await http.post("/v1/webhooks/alertmanager", json=resolved)
    # The last alert to resolve resolves the incident the alerts opened (auto-resolve).
    assert [e["type"] for e in done.json()["events"]][:2] == ["alert.resolved", "alert.resolved"]
    assert {e["incident_id"] for e in done.json()["events"]} == {incident_id}
    again = await http.post("/v1/webhooks/alertmanager", json=resolved)
    assert all(e["duplicate"] for e in again.json()["events"])

    log = await everything(service.store)
    counted = Counter(type(s.event) for s in log if not isinstance(s.event, EvidenceAttached))
    assert counted - Counter({IncidentResolved: 1}) == {
        IncidentDeclared: 1,
        AlertFired: 2,
        AlertResolved: 2,
    }


async def test_one_post_may_mix_firing_and_resolved(http: httpx.AsyncClient) -> None:
    firing = fixture("alertmanager_firing.json")
    await http.post("/v1/webhooks/alertmanager", json=firing)
    mixed = json.loads(json.dumps(firing))
    mixed["alerts"][0]["status"] = "resolved"
    mixed["alerts"][0]["endsAt"] = "2026-11-23T13:30:05.197Z"
    answer = (await http.post("/v1/webhooks/alertmanager", json=mixed)).json()
    assert [e["type"] for e in answer["events"]] == ["alert.resolved", "alert.fired"]
    assert answer["events"][1]["duplicate"] is True


async def test_alert_after_resolution_opens_a_new_incident(http: httpx.AsyncClient) -> None:
    firing = fixture("alertmanager_firing.json")
    first = (await http.post("/v1/webhooks/alertmanager", json=firing)).json()
    incident_id = first["events"][0]["incident_id"]
    assert (await http.post(f"/v1/incidents/{incident_id}/resolve")).status_code == 200
    refired = json.loads(json.dumps(firing))
    for alert in refired["alerts"]:
        alert["startsAt"] = "2026-11-23T15:00:00.5Z"
    second = (await http.post("/v1/webhooks/alertmanager", json=refired)).json()
    assert second["events"][0]["type"] == "incident.declared"
    assert second["events"][0]["incident_id"] != incident_id


async def test_malformed_alertmanager_payload_is_422_naming_the_field(
    http: httpx.AsyncClient, service: Service
) -> None:
    bad = fixture("alertmanager_firing.json")
    bad["alerts"][1]["status"] = "burning"
    answer = await http.post("/v1/webhooks/alertmanager", json=bad)
    assert answer.status_code == 422
    assert answer.json()["field"] == "alerts[1].status"
    assert await service.store.last_seq() == 0


async def test_pagerduty_trigger_acknowledge_resolve(
    http: httpx.AsyncClient, service: Service
) -> None:
    trigger = fixture("pagerduty_trigger.json")
    answer = await http.post("/v2/enqueue", json=trigger)
    assert answer.status_code == 202
    assert answer.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": trigger["dedup_key"],
    }
    retried = await http.post("/v1/webhooks/pagerduty/v2/enqueue", json=trigger)
    assert retried.status_code == 202
    assert retried.json() == answer.json()
    ack = await http.post("/v1/webhooks/pagerduty", json=fixture("pagerduty_acknowledge.json"))
    assert ack.status_code == 202
    assert ack.json() == answer.json()
    resolve = await http.post("/v2/enqueue", json=fixture("pagerduty_resolve.json"))
    assert resolve.status_code == 202
    assert resolve.json() == answer.json()

    log = await everything(service.store)
    assert [type(s.event) for s in log if not isinstance(s.event, EvidenceAttached)][:4] == [
        IncidentDeclared,
        AlertFired,
        IncidentAcknowledged,
        AlertResolved,
    ]
    assert len({s.event.incident_id for s in log}) == 1
    fired = next(s.event for s in log if isinstance(s.event, AlertFired))
    # The sender's dedup_key as sent; the correlation key scoped by its routing key, which
    # (a producer's token, with tokens on) is stored nowhere.
    assert fired.dedup_key == fired.fingerprint == trigger["dedup_key"]
    assert fired.correlation_id == scoped_key(trigger["routing_key"], trigger["dedup_key"])
    assert all(trigger["routing_key"].encode() not in s.raw for s in log)
    # The trigger's links are the incident's evidence.
    evidence = [s.event for s in log if isinstance(s.event, EvidenceAttached)]
    assert [(e.uri, e.description) for e in evidence] == [
        (trigger["links"][0]["href"], trigger["links"][0]["text"])
    ]


async def test_pagerduty_invalid_event_answers_like_pagerduty(
    http: httpx.AsyncClient, service: Service
) -> None:
    trigger = fixture("pagerduty_trigger.json")
    trigger["payload"]["severity"] = "disastrous"
    del trigger["payload"]["summary"]
    answer = await http.post("/v2/enqueue", json=trigger)
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any("payload.summary" in error for error in body["errors"])
    assert any("payload.severity" in error for error in body["errors"])
    for garbage in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        answer = await http.post(
            "/v2/enqueue", content=garbage, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["status"] == "invalid event"
    assert await service.store.last_seq() == 0


@pytest.fixture
async def second_instance(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "second", http_port=0)
    async with running(config) as other, httpx.AsyncClient(base_url=other.http_url) as client:
        yield client


async def test_racing_instances_open_one_incident_per_group(
    http: httpx.AsyncClient, second_instance: httpx.AsyncClient, service: Service
) -> None:
    firing = fixture("alertmanager_firing.json")
    groups = []
    for n in range(4):
        group = json.loads(json.dumps(firing))
        group["groupKey"] = f'{{}}:{{alertname="Flapping{n}"}}'
        for i, alert in enumerate(group["alerts"]):
            alert["fingerprint"] = f"{n:04x}{i:012x}"
        groups.append(group)
    clients = [http, second_instance]
    # Every group delivered 6 times, to both instances at once, as Alertmanager HA pairs do.
    answers = await asyncio.gather(
        *(clients[k % 2].post("/v1/webhooks/alertmanager", json=groups[k % 4]) for k in range(24))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]

    log = await everything(service.store)
    declared = [s.event for s in log if isinstance(s.event, IncidentDeclared)]
    assert sorted(d.correlation_id or "" for d in declared) == sorted(g["groupKey"] for g in groups)
    fired = Counter(
        (s.event.incident_id, s.event.fingerprint) for s in log if isinstance(s.event, AlertFired)
    )
    assert len(fired) == 8 and set(fired.values()) == {1}
