"""Lifecycle verbs after corrections (issue 10, points 8 and 9): the installed CLI and HTTP
against the served process."""

import os
import subprocess
from typing import Any

import httpx
from tests_support import one_line_error, run_cli

from services.bootstrap import Service


async def _run(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "alice@laptop"}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def _ok(service: Service, *args: str) -> str:
    done = await _run(service, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def _last(service: Service, incident_id: str, type_: str) -> dict[str, Any]:
    loaded = await service.store.load(incident_id)
    events = [s.event for s in loaded.events if s.event.__struct_config__.tag == type_]
    return {"event_id": events[-1].event_id, "count": len(events), "event": events[-1]}


async def test_escalate_without_level_goes_up_never_down(service: Service) -> None:
    out = await _ok(service, "declare", "Checkout 5xx", "--severity", "P1")
    incident_id = out.splitlines()[0].strip()
    await _ok(service, "escalate", incident_id, "--to", "payments-oncall", "--level", "3")
    await _ok(service, "escalate", incident_id, "--to", "vp-eng")
    last = await _last(service, incident_id, "incident.escalated")
    assert (last["count"], last["event"].level, last["event"].to) == (2, 4, "vp-eng")
    lower = await _run(service, "escalate", incident_id, "--to", "team-lead", "--level", "2")
    assert "never lowers" in one_line_error(lower, 2)


async def test_resolve_and_ack_work_again_after_their_retraction(
    service: Service, http: httpx.AsyncClient
) -> None:
    out = await _ok(service, "declare", "Checkout 5xx", "--severity", "P1")
    incident_id = out.splitlines()[0].strip()
    for verb, type_ in (("ack", "incident.acknowledged"), ("resolve", "incident.resolved")):
        await _ok(service, verb, incident_id)
        target = (await _last(service, incident_id, type_))["event_id"]
        retracted = await http.post(
            f"/v1/incidents/{incident_id}/retractions",
            json={"target_event_id": target, "reason": "wrong incident"},
        )
        assert retracted.status_code == 200, retracted.text
        again = await _ok(service, verb, incident_id)
        assert f"{incident_id} {type_} seq " in again, again
        assert (await _last(service, incident_id, type_))["count"] == 2
    seq = (await service.store.load(incident_id)).last_seq
    board = await http.get("/v1/incidents", params={"include_closed": True, "wait_for": seq})
    [row] = [i for i in board.json()["incidents"] if i["incident_id"] == incident_id]
    assert row["status"] == "resolved" and row["acknowledged"] is True

    await _ok(service, "close", incident_id)
    refused = one_line_error(await _run(service, "status", incident_id, "monitoring"), 2)
    assert "closed" in refused and "reopen it" not in refused
    seq = (await service.store.load(incident_id)).last_seq
    shown = await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": seq})
    assert shown.json()["incident"]["status"] == "closed"
