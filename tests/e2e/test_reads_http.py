"""Read routes over real HTTP: status board, incident, timeline, audit, SQL, readiness, metrics."""

import asyncio

import httpx

from services.bootstrap import Service


async def _declare(
    http: httpx.AsyncClient, title: str, severity: str, service: str
) -> tuple[str, int]:
    answer = await http.post(
        "/v1/incidents", json={"title": title, "severity": severity, "services": [service]}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["incident_id"], body["events"][-1]["seq"]


async def test_status_board_incident_and_timeline(http: httpx.AsyncClient) -> None:
    a, _ = await _declare(http, "Checkout 5xx", "P1", "checkout")
    b, _ = await _declare(http, "Search slow", "P3", "search")
    ack = (await http.post(f"/v1/incidents/{a}/ack", json={"actor": "alice@example.com"})).json()
    resolved = (await http.post(f"/v1/incidents/{b}/resolve")).json()
    last = max(ack["events"][0]["seq"], resolved["events"][0]["seq"])

    board = (await http.get("/v1/incidents", params={"wait_for": last})).json()["incidents"]
    assert [i["incident_id"] for i in board] == [a]
    assert board[0]["acknowledged"] is True and board[0]["severity"] == "P1"
    everything = (await http.get("/v1/incidents", params={"include_closed": "true"})).json()
    assert {i["incident_id"] for i in everything["incidents"]} == {a, b}
    by_service = (
        await http.get("/v1/incidents", params={"service": "search", "status": "resolved"})
    ).json()
    assert [i["incident_id"] for i in by_service["incidents"]] == [b]

    shown = (await http.get(f"/v1/incidents/{a}")).json()["incident"]
    assert shown["title"] == "Checkout 5xx" and shown["acknowledged_at"] is not None
    assert isinstance(shown["breaches"], list)

    timeline = (await http.get(f"/v1/incidents/{a}/timeline")).json()
    assert [e["type"] for e in timeline["events"]] == ["incident.declared", "incident.acknowledged"]
    assert timeline["events"][1]["actor"] == "alice@example.com"
    assert timeline["incident"]["incident_id"] == a
    assert (await http.get("/v1/incidents/INC-NOPE0000/timeline")).status_code == 404


async def test_audit_filters(http: httpx.AsyncClient) -> None:
    a, _ = await _declare(http, "Queue backlog", "P2", "queue")
    note = await http.post(
        f"/v1/incidents/{a}/notes", json={"text": "x", "actor": "bob@example.com"}
    )
    seq = note.json()["events"][0]["seq"]
    await http.get("/v1/incidents", params={"wait_for": seq})
    entries = (await http.get("/v1/audit", params={"actor": "bob@example.com"})).json()["entries"]
    assert [(e["type"], e["incident_id"]) for e in entries] == [("incident.note_added", a)]
    typed = (await http.get("/v1/audit", params={"type": "incident.declared"})).json()["entries"]
    assert [e["incident_id"] for e in typed] == [a]


async def test_query_route(http: httpx.AsyncClient) -> None:
    _, seq = await _declare(http, "Disk full", "P2", "db")
    await http.get("/v1/incidents", params={"wait_for": seq})
    answer = await http.post(
        "/v1/query", json={"sql": "SELECT severity, count(*) AS n FROM incidents GROUP BY ALL"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"columns": ["severity", "n"], "rows": [["P2", 1]], "truncated": False}
    refused = await http.post("/v1/query", json={"sql": "COPY events TO '/tmp/out.csv'"})
    assert refused.status_code == 400
    assert "COPY statements are not allowed" in refused.json()["detail"]
    assert refused.json()["field"] == "sql"
    write = await http.post("/v1/query", json={"sql": "DELETE FROM incidents"})
    assert write.status_code == 400 and "read-only" in write.json()["detail"]


async def test_readyz_reports_lag_reaching_zero(http: httpx.AsyncClient, service: Service) -> None:
    for n in range(5):
        await _declare(http, f"Incident {n}", "P3", "svc")
    for _ in range(200):
        ready = (await http.get("/readyz")).json()
        if ready["projector"]["lag"] == 0:
            break
        await asyncio.sleep(0.02)
    assert ready["ready"] is True
    assert ready["projector"]["lag"] == 0
    assert ready["projector"]["checkpoint"] == ready["stream"]["last_seq"] == 5


async def test_prometheus_metrics(http: httpx.AsyncClient) -> None:
    _, seq = await _declare(http, "Metrics", "P4", "obs")
    await http.get("/v1/incidents", params={"wait_for": seq})
    text = (await http.get("/metrics")).text
    assert "incidents_events_appended_total" in text
    assert "incidents_events_projected_total" in text
    assert "incidents_projector_lag" in text
    assert "incidents_request_duration_seconds" in text
