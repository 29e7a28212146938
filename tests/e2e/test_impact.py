"""Impact statements and detection corrections over HTTP (issue 12): a real HTTP server, a real
nats-server, the stored log and the read models."""

from typing import Any

import httpx
import msgspec
from tests_support import as_role, producer_declared, producer_event

from services.auth import Role
from services.bootstrap import Service

IMPACT = {
    "services": ["checkout"],
    "regions": ["eu-west-1", "us-east-1"],
    "customers": ["acme"],
    "customers_affected": 120,
    "users_affected_pct": 30.5,
    "data_loss": False,
    "security": False,
    "revenue_at_risk": 50_000,
    "text": "EU checkout failing",
}


async def _declare(http: httpx.AsyncClient, **extra: Any) -> str:
    body = {"title": "Checkout 5xx", "severity": "P1", **extra}
    answer = await http.post("/v1/incidents", json=body)
    assert answer.status_code == 201, answer.text
    incident_id: str = answer.json()["incident_id"]
    return incident_id


async def _stored(service: Service, incident_id: str) -> list[dict[str, Any]]:
    loaded = await service.store.load(incident_id)
    return [msgspec.json.decode(msgspec.json.encode(stored.event)) for stored in loaded.events]


async def _incident(http: httpx.AsyncClient, incident_id: str, seq: int) -> dict[str, Any]:
    answer = await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": seq})
    assert answer.status_code == 200, answer.text
    incident: dict[str, Any] = answer.json()["incident"]
    return incident


async def test_the_impact_route_stores_a_statement_the_timeline_shows(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http)
    body = IMPACT | {"event_id": "impact-1", "actor": "ana@example.com"}
    answer = await http.post(f"/v1/incidents/{incident_id}/impact", json=body)
    assert answer.status_code == 200, answer.text
    (event,) = answer.json()["events"]
    assert (event["type"], event["event_id"], event["duplicate"]) == (
        "incident.impact_updated",
        "impact-1",
        False,
    )
    stored = (await _stored(service, incident_id))[-1]
    assert (stored["type"], stored["actor"], stored["impact"]) == (
        "incident.impact_updated",
        "ana@example.com",
        IMPACT,
    )
    timeline = await http.get(
        f"/v1/incidents/{incident_id}/timeline", params={"wait_for": event["seq"]}
    )
    rows = [e for e in timeline.json()["events"] if e["type"] == "incident.impact_updated"]
    assert [row["body"]["impact"] for row in rows] == [IMPACT]

    # A statement replaces the previous one whole: what it leaves out is not known any more.
    again = await http.post(f"/v1/incidents/{incident_id}/impact", json={"users_affected_pct": 50})
    assert again.status_code == 200, again.text
    assert (await _stored(service, incident_id))[-1]["impact"] == {"users_affected_pct": 50.0}
    incident = await _incident(http, incident_id, again.json()["events"][0]["seq"])
    impact = incident["impact"]
    assert impact["users_affected_pct"] == 50
    assert not impact.get("regions") and impact.get("data_loss") is None


async def test_a_declaration_takes_an_impact(http: httpx.AsyncClient, service: Service) -> None:
    incident_id = await _declare(http, impact=IMPACT, impact_started_at="2026-01-02T09:00:00Z")
    (declared,) = await _stored(service, incident_id)
    assert declared["impact"] == IMPACT
    assert declared["impact_started_at"] == "2026-01-02T09:00:00Z"


async def test_a_bad_impact_names_the_field_and_appends_nothing(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http)
    stored = await service.store.last_seq()
    route = f"/v1/incidents/{incident_id}/impact"
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        (route, {"users_affected_pct": 150}, "users_affected_pct"),
        (route, {"users_affected_pct": -1}, "users_affected_pct"),
        (route, {"revenue_at_risk": -5}, "revenue_at_risk"),
        (route, {"revenue_at_risk": 1.5}, "revenue_at_risk"),
        (route, {"customers_affected": -1}, "customers_affected"),
        (route, {"regions": "eu-west-1"}, "regions"),
        (route, {"data_loss": "maybe"}, "data_loss"),
        (route, {"user_pct": 10}, "user_pct"),
        (route, {"impact": {"users_affected_pct": 10}}, "impact"),
        (route, {}, None),
        (
            "/v1/incidents",
            {"title": "x", "severity": "P1", "impact": {"users_affected_pct": 150}},
            "impact.users_affected_pct",
        ),
        (
            "/v1/incidents",
            {"title": "x", "severity": "P1", "impact": {"revenue_at_risk": -1}},
            "impact.revenue_at_risk",
        ),
        # Litestar names the object holding an unknown field; the detail names the field.
        ("/v1/incidents", {"title": "x", "severity": "P1", "impact": {"bogus": 1}}, "impact"),
    ]
    for path, body, field in cases:
        answer = await http.post(path, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"] == "invalid", answer.json()
        assert answer.json()["field"] == field, (body, answer.json())
    empty = await http.post(route)  # no body at all: an empty statement says nothing
    assert empty.status_code == 422, empty.text
    assert "users_affected_pct" in empty.json()["detail"]
    assert await service.store.last_seq() == stored


async def test_a_correction_moves_detection_and_impact_start(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(
        http,
        event_id="decl-detect",
        occurred_at="2026-01-02T10:00:00Z",
        detected_at="2026-01-02T09:50:00Z",
        impact_started_at="2026-01-02T09:45:00Z",
    )
    fix = {
        "target_event_id": "decl-detect",
        "corrected_detected_at": "2026-01-02T11:40:00+02:00",
        "corrected_impact_started_at": "2026-01-02T09:30:00Z",
        "reason": "the dashboard shows errors from 09:40",
    }
    answer = await http.post(f"/v1/incidents/{incident_id}/corrections", json=fix)
    assert answer.status_code == 200, answer.text
    (event,) = answer.json()["events"]
    assert event["type"] == "event.corrected"
    corrected = (await _stored(service, incident_id))[-1]
    assert corrected["corrected_detected_at"] == "2026-01-02T09:40:00Z"
    incident = await _incident(http, incident_id, event["seq"])
    assert incident["detected_at"] == "2026-01-02T09:40:00Z"
    assert incident["impact_started_at"] == "2026-01-02T09:30:00Z"
    # The declaration itself is not rewritten.
    assert (await _stored(service, incident_id))[0]["detected_at"] == "2026-01-02T09:50:00Z"


async def test_detection_corrects_only_the_declaration(
    http: httpx.AsyncClient, service: Service
) -> None:
    incident_id = await _declare(http, event_id="decl-only")
    noted = await http.post(
        f"/v1/incidents/{incident_id}/notes", json={"text": "looking", "event_id": "note-1"}
    )
    assert noted.status_code == 200, noted.text
    stored = await service.store.last_seq()
    for field in ("corrected_detected_at", "corrected_impact_started_at"):
        fix = {"target_event_id": "note-1", field: "2026-01-02T09:40:00Z", "reason": "earlier"}
        answer = await http.post(f"/v1/incidents/{incident_id}/corrections", json=fix)
        assert answer.status_code == 422, answer.text
        assert "declaration" in answer.json()["detail"] and "decl-only" in answer.json()["detail"]
    naive = {"target_event_id": "decl-only", "corrected_detected_at": "2026-01-02T09:40:00"}
    answer = await http.post(
        f"/v1/incidents/{incident_id}/corrections", json=naive | {"reason": "x"}
    )
    assert (answer.status_code, answer.json()["field"]) == (422, "corrected_detected_at")
    assert await service.store.last_seq() == stored


async def test_a_producer_may_state_impact_but_not_command(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        producer = as_role(Role.PRODUCER)
        declared = producer_declared("INC-IMPACT1", "d-impact1")
        assert (await http.post("/v1/events", json=declared, headers=producer)).is_success
        statement = producer_event(
            "incident.impact_updated", "INC-IMPACT1", "i-impact1", impact={"users_affected_pct": 12}
        )
        answer = await http.post("/v1/events", json=statement, headers=producer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["events"][0]["type"] == "incident.impact_updated"
        # The command route is for people.
        command = await http.post(
            "/v1/incidents/INC-IMPACT1/impact", json={"text": "x"}, headers=producer
        )
        assert command.status_code == 403, command.text
        person = await http.post(
            "/v1/incidents/INC-IMPACT1/impact",
            json={"text": "login failing for 12% of users"},
            headers=as_role(Role.RESPONDER),
        )
        assert person.status_code == 200, person.text
    stored = await guarded.store.load("INC-IMPACT1")
    principals = [(s.event.event_id, s.event.principal) for s in stored.events]
    assert [(e, p.role if p else None) for e, p in principals][:2] == [
        ("d-impact1", "producer"),
        ("i-impact1", "producer"),
    ]
