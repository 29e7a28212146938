"""Who did it, as authenticated (issue 11, point 8): every event records its principal inside
the hash chain, each role appends only its event types on every path, a claimed actor is kept
and shown next to the principal, and correlation keys are scoped by source and producer."""

from typing import Any

import httpx
import msgspec
import nats
from tests_support import (
    TOKENS,
    as_role,
    fixture_bytes,
    producer_declared,
    producer_event,
    producer_note,
)

from events.chain import verify
from events.subjects import ALL_INCIDENTS
from services.auth import Role
from services.bootstrap import Service

JSON = {"Content-Type": "application/json"}


def note(incident_id: str, event_id: str) -> dict[str, Any]:
    return producer_note(incident_id, event_id)


def declared(incident_id: str, event_id: str) -> dict[str, Any]:
    return producer_declared(incident_id, event_id, title="Probe failing")


_event = producer_event


PEOPLES: list[dict[str, Any]] = [
    _event("incident.acknowledged", "INC-PRIN1", "p-ack"),
    _event("incident.role_assigned", "INC-PRIN1", "p-assign", role="commander", person="mallory"),
    _event("incident.status_changed", "INC-PRIN1", "p-status", status="identified"),
    _event("incident.resolved", "INC-PRIN1", "p-resolve"),
    _event("incident.closed", "INC-PRIN1", "p-close"),
    _event("incident.reopened", "INC-PRIN1", "p-reopen"),
    _event("event.corrected", "INC-PRIN1", "p-fix", target_event_id="d-prin1", reason="x"),
    _event("event.retracted", "INC-PRIN1", "p-retract", target_event_id="d-prin1", reason="x"),
]


async def _stored(service: Service) -> list[dict[str, Any]]:
    return [msgspec.json.decode(raw) for _, raw in await service.store.records(ALL_INCIDENTS)]


async def test_a_producer_token_may_not_append_peoples_events(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        producer = as_role(Role.PRODUCER)
        declare = await http.post(
            "/v1/events", json=declared("INC-PRIN1", "d-prin1"), headers=producer
        )
        assert declare.status_code == 200, declare.text
        stored = await guarded.store.last_seq()
        for event in PEOPLES:
            answer = await http.post("/v1/events", json=event, headers=producer)
            assert answer.status_code == 403, (event["type"], answer.text)
            assert answer.json()["error"] == "forbidden"
            assert event["type"] in answer.json()["detail"]
        # A batch with one such event stores nothing, its allowed events included.
        batch = [note("INC-PRIN1", "p-note"), PEOPLES[0]]
        answer = await http.post("/v1/events", json=batch, headers=producer)
        assert answer.status_code == 403
        assert answer.json()["field"] == "[1].type"
        assert answer.json()["detail"] == "role producer may not append incident.acknowledged"
        assert await guarded.store.last_seq() == stored
        # The same events from an admin are the lifecycle's to judge.
        ack = await http.post("/v1/events", json=PEOPLES[0], headers=as_role(Role.ADMIN))
        assert ack.status_code == 200, ack.text


async def test_a_nats_producer_may_not_append_peoples_events(service: Service) -> None:
    nc = await nats.connect(service.nats_url)
    try:
        declare = msgspec.json.encode(declared("INC-PRIN2", "d-prin2"))
        answer = msgspec.json.decode((await nc.request("intake.events", declare, timeout=5)).data)
        assert answer["events"][0]["seq"] == 1
        ack = msgspec.json.encode(_event("incident.acknowledged", "INC-PRIN2", "n-ack"))
        for subject in ("intake.events", "intake.probe-7.events"):
            refused = msgspec.json.decode((await nc.request(subject, ack, timeout=5)).data)
            assert refused["error"] == "forbidden", refused
            assert refused["field"] == "type"
        named = msgspec.json.encode(note("INC-PRIN2", "n-note"))
        assert "events" in msgspec.json.decode(
            (await nc.request("intake.probe-7.events", named, timeout=5)).data
        )
    finally:
        await nc.close()
    principals = [(e["event_id"], e["principal"]) for e in await _stored(service)]
    assert principals == [
        ("d-prin2", {"name": "nats", "role": "producer"}),
        ("n-note", {"name": "probe-7", "role": "producer"}),
    ]


async def test_every_event_records_its_principal_inside_the_hash_chain(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        declare = await http.post(
            "/v1/incidents",
            json={"title": "Checkout", "severity": "P2", "actor": "ceo@example.com"},
            headers=as_role(Role.RESPONDER),
        )
        assert declare.status_code == 201, declare.text
        incident_id = declare.json()["incident_id"]
        # A client cannot choose its principal: not in a command body...
        forged = await http.post(
            f"/v1/incidents/{incident_id}/notes",
            json={"text": "x", "principal": {"name": "root", "role": "admin"}},
            headers=as_role(Role.RESPONDER),
        )
        assert (forged.status_code, forged.json()["field"]) == (422, "principal")
        # ...nor in a producer's event, where the authenticated one replaces it.
        event = note(incident_id, "n-forged") | {"principal": {"name": "root", "role": "admin"}}
        assert (
            await http.post("/v1/events", json=event, headers=as_role(Role.PRODUCER))
        ).is_success
        webhook = await http.post(
            "/v1/webhooks/alertmanager",
            content=fixture_bytes("alertmanager_firing.json"),
            headers=JSON | as_role(Role.PRODUCER),
        )
        assert webhook.status_code == 200, webhook.text
    records = await guarded.store.records(ALL_INCIDENTS)
    stored = [msgspec.json.decode(raw) for _, raw in records]
    assert [(e["type"], e["actor"], e["principal"]) for e in stored] == [
        ("incident.declared", "ceo@example.com", {"name": "responder", "role": "responder"}),
        ("incident.note_added", "synthetic-checker", {"name": "producer", "role": "producer"}),
        ("incident.declared", "alertmanager", {"name": "producer", "role": "producer"}),
        ("alert.fired", "alertmanager", {"name": "producer", "role": "producer"}),
        # The alert's links (runbook_url, generatorURL) become evidence, once per incident.
        ("evidence.attached", "alertmanager", {"name": "producer", "role": "producer"}),
        ("evidence.attached", "alertmanager", {"name": "producer", "role": "producer"}),
        ("alert.fired", "alertmanager", {"name": "producer", "role": "producer"}),
    ]
    assert verify(records) == []
    seq, raw = records[0]
    forged_raw = raw.replace(b'"name":"responder"', b'"name":"producer"')
    assert verify([(seq, forged_raw)])[0].reason == "hash does not match the stored bytes"


async def test_a_claimed_actor_is_shown_next_to_the_principal(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        responder = as_role(Role.RESPONDER)
        declare = await http.post(
            "/v1/incidents", json={"title": "Search slow", "severity": "P3"}, headers=responder
        )
        incident_id = declare.json()["incident_id"]
        ack = await http.post(
            f"/v1/incidents/{incident_id}/ack", json={"actor": "ceo@example.com"}, headers=responder
        )
        seq = ack.json()["events"][0]["seq"]
        timeline = await http.get(
            f"/v1/incidents/{incident_id}/timeline", params={"wait_for": seq}, headers=responder
        )
        rows = {row["type"]: row for row in timeline.json()["events"]}
        claimed = rows["incident.acknowledged"]
        assert (claimed["actor"], claimed["principal"], claimed["principal_role"]) == (
            "ceo@example.com",
            "responder",
            "responder",
        )
        assert rows["incident.declared"]["actor"] == "responder"  # the principal, by default
        audit = await http.get(
            "/v1/audit", params={"incident_id": incident_id}, headers=as_role(Role.AUDITOR)
        )
        entries = audit.json()["entries"]
        assert {(e["actor"], e["principal"]) for e in entries} == {
            ("responder", "responder"),
            ("ceo@example.com", "responder"),
        }
        page = await http.get(f"/incidents/{incident_id}", headers=responder)
        assert 'ceo@example.com <span class="muted">(authenticated as responder, responder)' in (
            page.text
        )
        postmortem = await http.get(f"/v1/incidents/{incident_id}/postmortem", headers=responder)
        assert "| ceo@example.com (authenticated as responder, responder) | Acknowledged |" in (
            postmortem.text
        )
        assert "| responder | Declared |" in postmortem.text


async def test_a_pagerduty_ack_never_reaches_another_sources_incident(service: Service) -> None:
    """PagerDuty's dedup_key equal to an Alertmanager groupKey: two keys, not one."""
    group_key = msgspec.json.decode(fixture_bytes("alertmanager_firing.json"))["groupKey"]
    async with httpx.AsyncClient(base_url=service.http_url) as http:
        fired = await http.post(
            "/v1/webhooks/alertmanager",
            content=fixture_bytes("alertmanager_firing.json"),
            headers=JSON,
        )
        incident_id = fired.json()["events"][0]["incident_id"]
        stored = await service.store.last_seq()
        ack = msgspec.json.decode(fixture_bytes("pagerduty_acknowledge.json"))
        answer = await http.post("/v2/enqueue", json=ack | {"dedup_key": group_key})
        # An unknown dedup_key (DESIGN 7 answers 202, this service 404 so far): nothing stored.
        assert answer.status_code in (202, 404), answer.text
        assert await service.store.last_seq() == stored
        incident = await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": stored})
        assert incident.json()["incident"]["acknowledged_at"] is None


async def test_correlation_keys_are_scoped_by_producer(guarded: Service) -> None:
    """The same groupKey from two producers opens two incidents."""
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        opened = set()
        for role in (Role.PRODUCER, Role.ADMIN, Role.PRODUCER):
            answer = await http.post(
                "/v1/webhooks/alertmanager",
                content=fixture_bytes("alertmanager_firing.json"),
                headers=JSON | {"Authorization": f"Bearer {TOKENS[role]}"},
            )
            assert answer.status_code == 200, answer.text
            opened.add(answer.json()["events"][0]["incident_id"])
        assert len(opened) == 2
