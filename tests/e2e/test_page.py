"""The web page: status board and incident timeline render, and user text is escaped."""

import httpx


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
