"""The web page: status board and incident timeline render, and user text is escaped."""

from datetime import UTC, datetime, timedelta
from typing import Any

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
    assert 'href="javascript' not in page.lower()
    # The retracted one is no evidence any more; the timeline still shows it, struck through.
    listed = page[page.index("<h2>Evidence</h2>") : page.index("<h2>Comms</h2>")]
    assert "alert(1)" in listed and "alert(2)" not in listed
    struck = page[page.index('<tr class="retracted"') :]
    assert "<code> JavaScript:alert(2)</code>" in struck[: struck.index("</tr>")]
    assert "<strong>retracted</strong> by local" in struck and "wrong trace" in struck
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


async def _settled(http: httpx.AsyncClient, incident_id: str, answer: httpx.Response) -> str:
    """The incident page once the read models hold the write `answer` stored."""
    assert answer.is_success, answer.text
    seq = max(e["seq"] for e in answer.json()["events"])
    await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": seq})
    return (await http.get(f"/incidents/{incident_id}")).text


async def test_incident_page_shows_comms_action_items_escalation_and_postmortem(
    http: httpx.AsyncClient,
) -> None:
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    declared = await http.post(
        "/v1/incidents",
        json={"title": "Payments down", "severity": "P1", "occurred_at": hour_ago},
    )
    incident_id = declared.json()["incident_id"]
    on = f"/v1/incidents/{incident_id}"
    before = await _settled(http, incident_id, declared)
    assert "None sent yet" in before and "Not published yet." in before

    sent = await http.post(f"{on}/comms", json={"template": "resolution", "vars": {"cause": "<b>"}})
    await http.post(
        f"{on}/comms",
        json={
            "audience": "status_page",
            "kind": "update",
            "message": "Fixing",
            "channel": "social",
        },
    )
    items = [
        {"item_id": "AI-1", "title": "Alert on pool", "owner": "bob", "due": "2026-01-05"},
        {"item_id": "AI-2", "title": "Runbook", "ticket_url": "javascript:alert(3)"},
    ]
    items[0] |= {"priority": "P1", "ticket_url": "https://jira.example.com/browse/OPS-7"}
    for item in items:
        assert (await http.post(f"{on}/action-items", json=item)).status_code == 200
    page = await _settled(
        http, incident_id, await http.post(f"{on}/action-items/start", json={"item_id": "AI-1"})
    )

    # The default escalation path: secondary on-call 15 min after detection, unacknowledged.
    escalation = (await http.get(on)).json()["incident"]["next_escalation"]
    assert (escalation["level"], escalation["to"]) == (1, "secondary-oncall")
    assert "next escalation: level 1 to secondary-oncall, due " in page
    assert "if still unacknowledged (overdue)</p>" in page
    # Comms: the rendered message (escaped), its audience, channel and template.
    message = sent.json()["comms"]["message"]
    assert message.startswith("✅ INCIDENT RESOLVED: Payments down")
    assert "Root cause: &lt;b&gt;" in page and "<b>" not in page
    assert "<td>internal</td><td>slack</td>" in page and "<td>resolution</td>" in page
    assert "<td>status_page</td><td>social</td>" in page and "Fixing</pre>" in page
    # Action items: status, owner, due, priority, and only http(s) tickets as links.
    row = page[page.index("<code>AI-1</code>") :]
    for text in ("in progress", "overdue", "bob", "2026-01-05", "P1"):
        assert text in row[: row.index("</tr>")], text
    link = '<a href="https://jira.example.com/browse/OPS-7" rel="noopener noreferrer"'
    assert link in page
    assert "<code>javascript:alert(3)</code>" in page and 'href="javascript' not in page

    await http.post(f"{on}/resolve")
    publish: dict[str, Any] = {"uri": "https://docs.example.com/pm/7", "status": "in_review"}
    publish |= {"authors": ["ana", "bob"], "summary": "Pool exhausted"}
    assert (await http.post(f"{on}/postmortem", json=publish)).status_code == 200
    review = {"held_at": hour_ago, "attendees": ["ana", "carol"], "summary": "3 items agreed"}
    done = await _settled(
        http, incident_id, await http.post(f"{on}/postmortem/review", json=review)
    )
    assert "next escalation" not in done  # resolved: nothing more falls due
    for text in (
        "<th>Status</th><td>in review</td>",
        "<th>Authors</th><td>ana, bob</td>",
        '<a href="https://docs.example.com/pm/7"',
        "<th>Summary</th><td>Pool exhausted</td>",
        "with ana, carol: 3 items agreed",
    ):
        assert text in done, text
