"""Action items end to end: the command routes, `GET /v1/action-items` judged on a fake clock,
and the `incidents action` verbs against the served process."""

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import one_line_error, run_cli

from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICKET = "https://jira.example.com/browse/OPS-7"


class Clock:
    """The only fake: `now` for recording and for judging what is overdue."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def timed(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, Clock, httpx.AsyncClient]]:
    clock = Clock()
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0)
    async with (
        running(config, clock=clock) as service,
        httpx.AsyncClient(base_url=service.http_url, timeout=10) as http,
    ):
        yield service, clock, http


async def _post(http: httpx.AsyncClient, path: str, **body: Any) -> dict[str, Any]:
    answer = await http.post(path, json={"actor": "alice@example.com", **body})
    assert answer.status_code in (200, 201), (path, answer.text)
    decoded: dict[str, Any] = answer.json()
    return decoded


async def _declare(http: httpx.AsyncClient, title: str) -> str:
    declared = await _post(http, "/v1/incidents", title=title, severity="P2")
    incident_id: str = declared["incident_id"]
    return incident_id


def _seq(answer: dict[str, Any]) -> int:
    return max(int(event["seq"]) for event in answer["events"])


async def test_items_are_added_started_completed_and_listed(
    timed: tuple[Service, Clock, httpx.AsyncClient],
) -> None:
    _, clock, http = timed
    a, b = await _declare(http, "Checkout 5xx"), await _declare(http, "Search slow")
    added = await _post(
        http,
        f"/v1/incidents/{a}/action-items",
        item_id="AI-1",
        title="Add slow query detection to CI",
        owner="erin@example.com",
        due="2026-03-02",
        priority="P1",
        ticket_url=TICKET,
    )
    assert [e["type"] for e in added["events"]] == ["action_item.added"]
    await _post(http, f"/v1/incidents/{a}/action-items", title="No id given", due="2026-03-05")
    await _post(http, f"/v1/incidents/{b}/action-items", item_id="AI-1", title="Other incident")
    started = await _post(http, f"/v1/incidents/{a}/action-items/start", item_id="AI-1")
    assert [e["type"] for e in started["events"]] == ["action_item.started"]
    again = await _post(http, f"/v1/incidents/{a}/action-items/start", item_id="AI-1")
    assert again["events"] == []  # started already: nothing to record
    missing = await http.post(f"/v1/incidents/{a}/action-items/start", json={"item_id": "AI-9"})
    assert missing.status_code == 404, missing.text
    assert "AI-9" in missing.json()["detail"]
    done = await _post(http, f"/v1/incidents/{b}/action-items/complete", item_id="AI-1")

    async def listed(**query: Any) -> list[dict[str, Any]]:
        answer = await http.get("/v1/action-items", params={"wait_for": _seq(done), **query})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["action_items"]
        return items

    every = await listed()
    assert every[0] == {
        "incident_id": a,
        "item_id": "AI-1",
        "title": "Add slow query detection to CI",
        "owner": "erin@example.com",
        "due": "2026-03-02",
        "due_at": "2026-03-03T00:00:00Z",
        "priority": "P1",
        "status": "in_progress",
        "ticket_url": TICKET,
        "overdue": False,
    }
    generated = every[1]["item_id"]
    assert generated.startswith("AI-") and every[1]["status"] == "todo"
    assert [(i["incident_id"], i["item_id"], i["status"]) for i in every[2:]] == [
        (b, "AI-1", "done")
    ]

    # The due day ends at midnight UTC: overdue from then on, until done.
    clock.now = datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
    assert await listed(overdue="true") == []
    clock.now = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert [i["item_id"] for i in await listed(overdue="true")] == ["AI-1"]
    assert [i["item_id"] for i in await listed(overdue="false")] == [generated, "AI-1"]
    assert [i["incident_id"] for i in await listed(owner="erin@example.com")] == [a]
    assert [i["incident_id"] for i in await listed(status="done")] == [b]
    assert [i["item_id"] for i in await listed(incident_id=a)] == ["AI-1", generated]

    for query, field in (({"status": "started"}, "status"), ({"limit": "0"}, "limit")):
        refused = await http.get("/v1/action-items", params=query)
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == field


async def _run(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "erin@laptop"}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def test_the_action_verbs(timed: tuple[Service, Clock, httpx.AsyncClient]) -> None:
    service, clock, http = timed
    incident_id = await _declare(http, "Login 500s")
    add = ["action", "add", incident_id, "Alert on pool saturation", "--owner", "erin"]
    added = await _run(service, *add, "--due", "2026-03-02", "--priority", "P0", "--ticket", TICKET)
    assert added.returncode == 0, added.stderr
    item_id, stored = added.stdout.splitlines()[:2]
    assert item_id.startswith("AI-") and len(item_id) == 11, added.stdout
    assert f"{incident_id} action_item.added seq" in stored
    started = await _run(service, "action", "start", incident_id, item_id)
    assert started.returncode == 0 and "action_item.started" in started.stdout, started.stderr
    chosen = await _run(
        service, "action", "add", incident_id, "Canary deploys", "--item-id", "AI-2"
    )
    assert chosen.stdout.splitlines()[0] == "AI-2", chosen.stdout
    completed = await _run(service, "action", "complete", incident_id, "AI-2", "--json")
    assert completed.returncode == 0, completed.stderr
    [event] = json.loads(completed.stdout)["events"]
    assert event["type"] == "action_item.completed"
    await service.projector.wait(event["seq"], timeout=10)

    clock.now = T0 + timedelta(days=2)  # 2026-03-03 12:00Z: the 2nd has ended
    overdue = await _run(service, "action", "list", "--overdue", "--json")
    assert overdue.returncode == 0, overdue.stderr
    [late] = json.loads(overdue.stdout)["action_items"]
    assert (late["item_id"], late["status"], late["overdue"]) == (item_id, "in_progress", True)
    table = await _run(service, "action", "list", "--owner", "erin")
    assert table.returncode == 0, table.stderr
    assert item_id in table.stdout and "OVERDUE" in table.stdout
    assert not re.search(r"\bAI-2\b", table.stdout)  # generated ids may start "AI-2..."
    done = await _run(service, "action", "list", "--status", "done", "--incident", incident_id)
    assert "AI-2" in done.stdout and item_id not in done.stdout

    bad_date = await _run(service, "action", "add", incident_id, "x", "--due", "2026-02-30")
    assert "--due" in one_line_error(bad_date, 2)
    assert "action add --help" in one_line_error(bad_date, 2)
    unknown = await _run(service, "action", "complete", incident_id, "AI-404")
    assert "AI-404 does not exist" in one_line_error(unknown, 2)
