"""Changes before detection, where people look (issue 12): `incidents show` and the incident
page list the deploys and config pushes of the hour before an incident was detected."""

import asyncio
import os

import httpx
from tests_support import run_cli

from services.bootstrap import Service

CHANGE = {
    "routing_key": "R0UT1NGKEY0123456789ABCDEFGHIJKL",
    "payload": {
        "summary": "Deploy checkout v42",
        "source": "ci.example.com",
        "timestamp": "2026-01-02T09:20:00Z",
    },
    "links": [
        {"href": "https://ci.example.com/build/42", "text": "build 42"},
        {"href": "javascript:alert(3)", "text": "sneaky"},
    ],
}


async def _changes_projected(service: Service, seq: int) -> None:
    """Until change records up to `seq` are in the read models: they are followed apart from
    the incidents' events, so `projector.wait` does not cover them."""
    async with asyncio.timeout(10):
        while service.projector.changes_seq < seq:
            await asyncio.sleep(0.05)


async def test_show_and_page_list_changes_before_detection(
    service: Service, http: httpx.AsyncClient
) -> None:
    recorded = await http.post("/v2/change/enqueue", json=CHANGE)
    assert recorded.status_code == 202, recorded.text
    await _changes_projected(service, await service.store.last_seq())
    declared = await http.post(
        "/v1/incidents",
        json={
            "title": "Checkout 5xx",
            "severity": "P1",
            "occurred_at": "2026-01-02T10:00:00Z",
            "detected_at": "2026-01-02T09:50:00Z",
        },
    )
    incident_id = declared.json()["incident_id"]
    unrelated = await http.post("/v1/incidents", json={"title": "Search slow", "severity": "P3"})
    await service.projector.wait(unrelated.json()["events"][-1]["seq"], timeout=10)

    env = {**os.environ, "INCIDENTS_URL": service.http_url}
    env.pop("INCIDENTS_TOKEN", None)
    done = await run_cli(env, "show", incident_id)
    assert done.returncode == 0, done.stderr
    for text in (
        "changes before detection",
        "2026-01-02 09:20:00Z",
        "Deploy checkout v42",
        "ci.example.com",
        "build 42 <https://ci.example.com/build/42>",
    ):
        assert text in done.stdout, (text, done.stdout)
    other = await run_cli(env, "show", unrelated.json()["incident_id"])
    assert "changes before detection: none" in other.stdout

    page = (await http.get(f"/incidents/{incident_id}")).text
    assert "Changes before detection" in page and "Deploy checkout v42" in page
    link = '<a href="https://ci.example.com/build/42" rel="noopener noreferrer" target="_blank">'
    assert link + "build 42</a>" in page
    assert 'href="javascript' not in page  # never a link, whichever layer drops it
    other_page = (await http.get(f"/incidents/{unrelated.json()['incident_id']}")).text
    assert "Changes before detection" not in other_page
