"""As-of reconstruction from the log equals what the projection showed at that instant."""

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STATE_KEYS = (
    "severity",
    "status",
    "phase",
    "commander",
    "roles",
    "acknowledged_at",
    "resolved_at",
    "open_mitigations",
    "comms_count",
    "last_comms_at",
    "alerts_firing",
)


class Clock:
    """The only fake: recorded_at, `now` for reads and breaches."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def timed(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, Clock]]:
    clock = Clock()
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0)
    async with running(config, clock=clock) as service:
        yield service, clock


def naive_fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    """An independent fold of the timeline events: only what this test checks."""
    state: dict[str, Any] = {"severity": None, "status": None, "acknowledged": False, "notes": 0}
    for e in events:
        body = e["body"]
        match e["type"]:
            case "incident.declared":
                state["severity"], state["status"] = body["severity"], "investigating"
            case "incident.severity_changed":
                state["severity"] = body["to"]
            case "incident.status_changed":
                state["status"] = body["status"]
            case "incident.acknowledged":
                state["acknowledged"] = True
            case "incident.resolved":
                state["status"] = "resolved"
            case "incident.note_added":
                state["notes"] += 1
    return state


async def test_as_of_equals_the_projection_then_and_a_naive_fold(
    timed: tuple[Service, Clock],
) -> None:
    service, clock = timed
    rng = random.Random(5)
    snapshots: list[tuple[datetime, dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=service.http_url) as http:
        declared = await http.post("/v1/incidents", json={"title": "Replica lag", "severity": "P2"})
        incident_id = declared.json()["incident_id"]
        steps: list[tuple[str, dict[str, Any]]] = [
            ("ack", {}),
            ("severity", {"to": "P1", "reason": "customer impact"}),
            ("roles", {"role": "commander", "person": "ana"}),
            ("notes", {"text": "failover considered"}),
            ("mitigations", {"mitigation_id": "m1", "action": "failover"}),
            ("comms", {"audience": "internal", "kind": "initial", "message": "on it"}),
            ("status", {"status": "identified"}),
            ("mitigations/complete", {"mitigation_id": "m1", "outcome": "succeeded"}),
            ("severity", {"to": "P2", "reason": "contained"}),
            ("notes", {"text": "replica caught up"}),
            ("resolve", {}),
        ]
        seq = declared.json()["events"][-1]["seq"]
        for verb, body in [("", {}), *steps]:
            if verb:
                clock.now += timedelta(minutes=rng.randint(1, 40))
                answer = await http.post(f"/v1/incidents/{incident_id}/{verb}", json=body)
                assert answer.status_code == 200, answer.text
                seq = answer.json()["events"][-1]["seq"]
            current = await http.get(
                f"/v1/incidents/{incident_id}/timeline", params={"wait_for": seq}
            )
            snapshots.append((clock.now, current.json()))

        for instant, live in snapshots:
            past = await http.get(
                f"/v1/incidents/{incident_id}/timeline", params={"as_of": instant.isoformat()}
            )
            assert past.status_code == 200, past.text
            got = past.json()
            assert [e["event_id"] for e in got["events"]] == [e["event_id"] for e in live["events"]]
            assert {k: got["incident"][k] for k in STATE_KEYS} == {
                k: live["incident"][k] for k in STATE_KEYS
            }
            assert got["incident"]["breaches"] == live["incident"]["breaches"]
            assert naive_fold(got["events"]) == naive_fold(live["events"])

        for _ in range(20):
            instant = T0 + timedelta(seconds=rng.uniform(0, (clock.now - T0).total_seconds()))
            expected = max((s for s in snapshots if s[0] <= instant), key=lambda s: s[0])[1]
            got = (
                await http.get(
                    f"/v1/incidents/{incident_id}/timeline", params={"as_of": instant.isoformat()}
                )
            ).json()
            assert [e["seq"] for e in got["events"]] == [e["seq"] for e in expected["events"]]
            assert naive_fold(got["events"]) == naive_fold(expected["events"])

        before = await http.get(
            f"/v1/incidents/{incident_id}/timeline",
            params={"as_of": (T0 - timedelta(seconds=1)).isoformat()},
        )
        assert before.status_code == 404
        board = await http.get("/v1/incidents", params={"as_of": snapshots[3][0].isoformat()})
        assert [(i["incident_id"], i["severity"]) for i in board.json()["incidents"]] == [
            (incident_id, "P1")
        ]
        after = await http.get("/v1/incidents", params={"as_of": clock.now.isoformat()})
        assert after.json()["incidents"] == []  # resolved by then: off the board
