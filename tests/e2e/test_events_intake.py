"""POST /v1/events and the NATS intake (faststream, real server): one answer, all or nothing."""

import asyncio
from typing import Any

import httpx
import msgspec
import nats
from tests_support import fixture_bytes, producer_declared, producer_note

from services.bootstrap import Service

T = "2026-11-20T10:00:00.123456Z"


def declared(incident_id: str, event_id: str) -> dict[str, Any]:
    return producer_declared(incident_id, event_id, occurred_at=T)


def note(incident_id: str, event_id: str, text: str = "probe still failing") -> dict[str, Any]:
    return producer_note(incident_id, event_id, text, occurred_at=T)


async def test_single_event_and_batch(http: httpx.AsyncClient, service: Service) -> None:
    one = await http.post("/v1/events", json=declared("INC-SYN001", "e1"))
    assert one.status_code == 200
    assert one.json()["events"] == [
        {
            "event_id": "e1",
            "type": "incident.declared",
            "incident_id": "INC-SYN001",
            "seq": 1,
            "duplicate": False,
        }
    ]
    batch = [declared("INC-SYN002", "e2"), note("INC-SYN001", "e3"), note("INC-SYN002", "e4")]
    answer = await http.post("/v1/events", json=batch)
    assert answer.status_code == 200, answer.text
    assert [e["event_id"] for e in answer.json()["events"]] == ["e2", "e3", "e4"]
    assert sorted(e["seq"] for e in answer.json()["events"]) == [2, 3, 4]
    again = await http.post("/v1/events", json=batch)
    assert [e["duplicate"] for e in again.json()["events"]] == [True, True, True]
    assert await service.store.last_seq() == 4


async def test_batch_is_validated_whole_before_any_append(
    http: httpx.AsyncClient, service: Service
) -> None:
    invalid = [declared("INC-SYN003", "e1"), {**note("INC-SYN003", "e2"), "kind": "gossip"}]
    answer = await http.post("/v1/events", json=invalid)
    assert answer.status_code == 422
    assert answer.json()["field"] == "[1].kind"
    refused = [declared("INC-SYN003", "e1"), note("INC-NOTHERE", "e2")]
    answer = await http.post("/v1/events", json=refused)
    assert answer.status_code == 404
    assert answer.json()["field"] == "[1]"
    twice = [declared("INC-SYN003", "e1"), note("INC-SYN003", "e1")]
    assert (await http.post("/v1/events", json=twice)).status_code == 422
    assert await service.store.last_seq() == 0


async def test_limits(http: httpx.AsyncClient, service: Service) -> None:
    too_many = [note("INC-SYN004", f"e{i}") for i in range(1001)]
    answer = await http.post("/v1/events", json=too_many)
    assert answer.status_code == 413
    big = note("INC-SYN004", "big", text="x" * 16000)
    big["labels"] = {f"k{i}": "v" * 4000 for i in range(20)}  # unknown field, but 80 KB
    answer = await http.post("/v1/events", json=[big])
    assert answer.status_code == 413
    assert answer.json()["field"] == "[0]"
    assert await service.store.last_seq() == 0


async def test_nats_intake_answers_what_http_answers(service: Service) -> None:
    nc = await nats.connect(service.nats_url)
    try:
        reply = await nc.request(
            "intake.events", msgspec.json.encode(declared("INC-NATS01", "n1")), timeout=5
        )
        assert msgspec.json.decode(reply.data) == {
            "events": [
                {
                    "event_id": "n1",
                    "type": "incident.declared",
                    "incident_id": "INC-NATS01",
                    "seq": 1,
                    "duplicate": False,
                }
            ],
            "unchanged": [],
            "incident_id": None,
        }
        bad = await nc.request("intake.events", b"{not json", timeout=5)
        assert msgspec.json.decode(bad.data)["error"] == "malformed"
        invalid = await nc.request(
            "intake.events",
            msgspec.json.encode({**note("INC-NATS01", "n2"), "kind": "x"}),
            timeout=5,
        )
        assert msgspec.json.decode(invalid.data)["field"] == "kind"
        # The subscriber survives bad messages and keeps serving good ones.
        good = await nc.request(
            "intake.events", msgspec.json.encode(note("INC-NATS01", "n3")), timeout=5
        )
        assert msgspec.json.decode(good.data)["events"][0]["seq"] == 2
    finally:
        await nc.close()


async def test_nats_alertmanager_intake(service: Service) -> None:
    nc = await nats.connect(service.nats_url)
    try:
        reply = await nc.request(
            "intake.alertmanager", fixture_bytes("alertmanager_firing.json"), timeout=5
        )
        types = [e["type"] for e in msgspec.json.decode(reply.data)["events"]]
        # The two alerts share their runbook and graph: attached once, with the first.
        assert types == [
            "incident.declared",
            "alert.fired",
            "evidence.attached",
            "evidence.attached",
            "alert.fired",
        ]
        bad = await nc.request("intake.alertmanager", b'{"version": "3"}', timeout=5)
        assert msgspec.json.decode(bad.data)["field"] == "version"
        # Fire and forget (no reply subject) is served too.
        await nc.publish("intake.alertmanager", fixture_bytes("alertmanager_resolved.json"))
        await nc.flush()
    finally:
        await nc.close()
    # Fire and forget has no answer to wait on: poll the log (5 incident events + 1 claim,
    # then 2 resolves and the resolution they make: the group's alerts have all ended).
    for _ in range(200):
        if await service.store.last_seq() == 9:
            break
        await asyncio.sleep(0.02)
    events = [s.event async for batch in service.store.read() for s in batch]
    assert [msgspec.to_builtins(e)["type"] for e in events][-3:] == [
        "alert.resolved",
        "alert.resolved",
        "incident.resolved",
    ]
