"""The web page: status board and incident timeline render, and user text is escaped."""

import httpx
from tests_support import fixture_bytes


async def test_board_and_incident_pages(http: httpx.AsyncClient) -> None:
    declared = await http.post(
        "/v1/incidents",
        json={"title": "<script>alert(1)</script> checkout", "severity": "P1", "commander": "ana"},
    )
    incident_id = declared.json()["incident_id"]
    seq = declared.json()["events"][-1]["seq"]
    await http.get("/v1/incidents", params={"wait_for": seq})

    board = await http.get("/")
    assert board.status_code == 200
    assert board.headers["content-type"].startswith("text/html")
    assert incident_id in board.text
    assert "<script>alert(1)</script>" not in board.text
    assert "&lt;script&gt;" in board.text

    page = await http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    assert "incident.declared" in page.text and "incident.role_assigned" in page.text
    assert (await http.get("/incidents/INC-NOPE0000")).status_code == 404


async def test_incident_page_shows_impact_detection_evidence_and_truncated_alerts(
    http: httpx.AsyncClient,
) -> None:
    impact = {"regions": ["eu-west-1"], "users_affected_pct": 30.5, "data_loss": False}
    declared = await http.post(
        "/v1/incidents",
        json={
            "title": "Checkout 5xx",
            "severity": "P1",
            "occurred_at": "2026-01-02T10:00:00Z",
            "detected_at": "2026-01-02T09:50:00Z",
            "impact_started_at": "2026-01-02T09:45:00Z",
            "impact": impact | {"text": "<b>EU</b> checkout failing"},
        },
    )
    incident_id = declared.json()["incident_id"]
    on = f"/v1/incidents/{incident_id}"
    evidence = [
        {
            "kind": "dashboard",
            "uri": "https://grafana.example.com/d/1?a=1&b=2",
            "description": "5xx",
        },
        {"kind": "log_query", "uri": "javascript:alert(1)"},
        {"kind": "trace", "uri": " JavaScript:alert(2)", "event_id": "ev-retracted"},
    ]
    for body in evidence:
        assert (await http.post(f"{on}/evidence", json=body)).status_code == 200
    retracted = await http.post(
        f"{on}/retractions", json={"target_event_id": "ev-retracted", "reason": "wrong trace"}
    )
    seq = retracted.json()["events"][-1]["seq"]
    await http.get(on, params={"wait_for": seq})

    page = (await http.get(f"/incidents/{incident_id}")).text
    assert "detected 2026-01-02 09:50:00Z" in page
    assert "impact started 2026-01-02 09:45:00Z" in page
    for text in ("30.5%", "eu-west-1", "Data loss</th><td>no", "&lt;b&gt;EU&lt;/b&gt; checkout"):
        assert text in page, text
    link = '<a href="https://grafana.example.com/d/1?a=1&amp;b=2" rel="noopener noreferrer"'
    assert link in page
    assert "<code>javascript:alert(1)</code>" in page  # shown, never a link
    assert 'href="javascript' not in page.lower() and "alert(2)" not in page
    assert "not delivered" not in page

    # Alerts the monitor left out of its delivery are counted on the page.
    fired = await http.post(
        "/v1/webhooks/alertmanager",
        content=fixture_bytes("alertmanager_firing.json").replace(
            b'"truncatedAlerts":0', b'"truncatedAlerts":7'
        ),
        headers={"Content-Type": "application/json"},
    )
    assert fired.status_code == 200, fired.text
    opened = fired.json()["events"][0]
    await http.get(
        f"/v1/incidents/{opened['incident_id']}",
        params={"wait_for": max(e["seq"] for e in fired.json()["events"])},
    )
    alerted = (await http.get(f"/incidents/{opened['incident_id']}")).text
    assert "7 alerts not delivered (truncated)" in alerted
    runbook = '<a href="https://runbooks.example.invalid/checkout-5xx" rel="noopener noreferrer"'
    assert runbook in alerted
    assert "Not stated yet" in alerted  # an incident opened by alerts has no impact statement
