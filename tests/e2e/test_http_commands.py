"""The HTTP write API end to end: a real HTTP server, a real nats-server, the stored log."""

import httpx
import msgspec
import pytest

from events.store import EventStore
from services.bootstrap import Service
from services.natsserver import EmbeddedNatsServer


async def _declare(http: httpx.AsyncClient, **extra: object) -> str:
    body = {"title": "Checkout 5xx", "severity": "P1", "services": ["checkout"], **extra}
    response = await http.post("/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["incident_id"]
    return incident_id


async def _types(store: EventStore, incident_id: str) -> list[str]:
    loaded = await store.load(incident_id)
    return [msgspec.to_builtins(s.event)["type"] for s in loaded.events]


async def test_declare_answers_stored_events_with_sequences(
    http: httpx.AsyncClient, service: Service
) -> None:
    response = await http.post(
        "/v1/incidents",
        json={"title": "Payments down", "severity": "P0", "commander": "alice@example.com"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["incident_id"].startswith("INC-")
    assert [(e["type"], e["seq"], e["duplicate"]) for e in body["events"]] == [
        ("incident.declared", 1, False),
        ("incident.role_assigned", 2, False),
    ]
    assert all(e["incident_id"] == body["incident_id"] for e in body["events"])
    assert await _types(service.store, body["incident_id"]) == [
        "incident.declared",
        "incident.role_assigned",
    ]


async def test_every_command_route_appends_its_event(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http)
    steps: list[tuple[str, dict[str, object], str]] = [
        ("ack", {}, "incident.acknowledged"),
        ("severity", {"to": "P0", "reason": "all regions"}, "incident.severity_changed"),
        ("status", {"status": "identified"}, "incident.status_changed"),
        ("phase", {"phase": "mitigation"}, "incident.phase_changed"),
        ("roles", {"role": "comms", "person": "carol"}, "incident.role_assigned"),
        ("roles/release", {"role": "comms", "person": "carol"}, "incident.role_released"),
        ("escalations", {"level": 2, "to": "payments-oncall"}, "incident.escalated"),
        (
            "mitigations",
            {"mitigation_id": "m1", "action": "rollback", "target": "checkout@v41"},
            "mitigation.started",
        ),
        (
            "mitigations/complete",
            {"mitigation_id": "m1", "outcome": "succeeded"},
            "mitigation.completed",
        ),
        (
            "comms",
            {"audience": "status_page", "kind": "initial", "message": "We are investigating"},
            "comms.sent",
        ),
        ("notes", {"text": "bad deploy", "kind": "root_cause"}, "incident.note_added"),
        ("evidence", {"kind": "trace", "uri": "https://traces/abc"}, "evidence.attached"),
        ("resolve", {"summary": "rolled back"}, "incident.resolved"),
        ("postmortem", {"uri": "https://docs/pm-1"}, "postmortem.published"),
        ("action-items", {"item_id": "a1", "title": "Canary deploys"}, "action_item.added"),
        ("action-items/complete", {"item_id": "a1"}, "action_item.completed"),
        ("close", {}, "incident.closed"),
    ]
    for verb, body, expected in steps:
        response = await http.post(f"/v1/incidents/{incident_id}/{verb}", json=body)
        assert response.status_code == 200, (verb, response.text)
        assert [e["type"] for e in response.json()["events"]] == [expected], verb
    assert await _types(service.store, incident_id) == [
        "incident.declared",
        *(expected for _, _, expected in steps),
    ]


async def test_retry_with_same_event_id_is_answered_as_duplicate(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http)
    note = {"event_id": "note-retry-1", "text": "checking dashboards"}
    first = (await http.post(f"/v1/incidents/{incident_id}/notes", json=note)).json()
    again = (await http.post(f"/v1/incidents/{incident_id}/notes", json=note)).json()
    assert first["events"][0]["duplicate"] is False
    assert again["events"][0]["duplicate"] is True
    assert again["events"][0]["seq"] == first["events"][0]["seq"]
    assert await _types(service.store, incident_id) == ["incident.declared", "incident.note_added"]


async def test_no_op_answers_no_events(http: httpx.AsyncClient) -> None:
    incident_id = await _declare(http)
    assert (await http.post(f"/v1/incidents/{incident_id}/ack")).json()["events"] != []
    again = await http.post(f"/v1/incidents/{incident_id}/ack")
    assert again.status_code == 200
    assert again.json()["events"] == []


async def test_bad_input_names_the_field_and_appends_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    cases = [
        ({"title": "x", "severity": "P9"}, 422, "severity"),
        ({"title": "x", "severity": "P1", "sevrity": "P1"}, 422, "sevrity"),
        ({"severity": "P1"}, 422, "title"),
        ({"title": "x" * 301, "severity": "P1"}, 422, "title"),
        (
            {"title": "x", "severity": "P1", "occurred_at": "2026-11-01T10:00:00"},
            422,
            "occurred_at",
        ),
    ]
    for body, status, field in cases:
        response = await http.post("/v1/incidents", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"] == "invalid"
        assert response.json()["field"] == field, response.json()
    malformed = await http.post(
        "/v1/incidents", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "malformed"
    assert await service.store.last_seq() == 0


async def test_lifecycle_errors(http: httpx.AsyncClient) -> None:
    missing = await http.post("/v1/incidents/INC-NOPE0000/ack")
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["detail"]
    incident_id = await _declare(http)
    same = await http.post(f"/v1/incidents/{incident_id}/severity", json={"to": "P1"})
    assert same.status_code == 409
    assert same.json() == {"error": "conflict", "field": None, "detail": "severity is already P1"}
    close = await http.post(f"/v1/incidents/{incident_id}/close")
    assert close.status_code == 409
    assert "resolve" in close.json()["detail"]
    mismatch = await http.post(
        f"/v1/incidents/{incident_id}/notes", json={"incident_id": "INC-OTHER", "text": "x"}
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["field"] == "incident_id"


async def test_size_limits_are_413(http: httpx.AsyncClient, service: Service) -> None:
    huge = await http.post(
        "/v1/events",
        content=b"[" + b" " * (1024 * 1024) + b"]",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"] == "too_large"
    assert await service.store.last_seq() == 0


async def test_jetstream_down_is_503_with_retry_after(
    http: httpx.AsyncClient, nats_server: EmbeddedNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    incident_id = await _declare(http)
    nats_server.stop()
    path = f"/v1/incidents/{incident_id}/notes"
    response = await http.post(path, json={"text": "hello?"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"] == "unavailable"
    # The operator sees it too, not only the client.
    assert any(
        r.levelname == "WARNING" and f"POST {path} answered 503" in r.getMessage()
        for r in caplog.records
    )


async def test_health_and_openapi(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    spec = (await http.get("/schema/openapi.json")).json()
    assert "/v1/incidents" in spec["paths"]
    assert "/v1/incidents/{incident_id}/ack" in spec["paths"]
    assert "/v1/webhooks/alertmanager" in spec["paths"]


async def test_a_command_without_a_body_names_the_missing_field(http: httpx.AsyncClient) -> None:
    incident_id = await _declare(http)
    answer = await http.post(f"/v1/incidents/{incident_id}/severity")
    assert answer.status_code == 422
    assert answer.json()["field"] == "to"
