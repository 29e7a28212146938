"""The postmortem process from the command line: `incidents postmortem [draft] | publish |
review` against the served process, checked against the stored events."""

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec
from tests_support import one_line_error, run_cli

from services.bootstrap import Service


async def _resolved(http: httpx.AsyncClient) -> str:
    declared = await http.post("/v1/incidents", json={"title": "Login 500s", "severity": "P1"})
    assert declared.status_code == 201, declared.text
    incident_id: str = declared.json()["incident_id"]
    on = f"/v1/incidents/{incident_id}"
    note = {"kind": "went_well", "text": "The alert fired within a minute."}
    assert (await http.post(f"{on}/notes", json=note)).status_code == 200
    assert (await http.post(f"{on}/resolve", json={"summary": "rolled back"})).status_code == 200
    return incident_id


async def _run(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url, "INCIDENTS_ACTOR": "alice@laptop"}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def _ok(service: Service, *args: str) -> str:
    done = await _run(service, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def _events(service: Service, incident_id: str, kind: str) -> list[dict[str, Any]]:
    loaded = await service.store.load(incident_id)
    events = [msgspec.to_builtins(stored.event) for stored in loaded.events]
    return [e for e in events if e["type"] == kind]


async def test_publish_and_review(
    service: Service, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    incident_id = await _resolved(http)
    publish = ["postmortem", "publish", incident_id]
    out = await _ok(service, *publish, "--author", "alice", "--author", "bob", "--status", "draft")
    assert f"{incident_id} postmortem.published seq" in out
    [generated] = await _events(service, incident_id, "postmortem.published")
    assert generated["markdown"].startswith(f"# Postmortem: {incident_id} — Login 500s\n")
    assert "- The alert fired within a minute. — " in generated["markdown"]
    assert (list(generated["authors"]), generated["status"]) == (["alice", "bob"], "draft")

    document = tmp_path / "pm.md"
    document.write_text("# Login 500s\n\nOur own words.\n", encoding="utf-8")
    await _ok(service, *publish, "--markdown-file", str(document), "--status", "in_review")
    uri = "https://wiki.example.com/pm/1"
    await _ok(service, *publish, "--uri", uri, "--summary", "pool exhaustion")
    _, inline, final = await _events(service, incident_id, "postmortem.published")
    assert (inline["markdown"], inline["status"], list(inline["authors"])) == (
        "# Login 500s\n\nOur own words.\n",
        "in_review",
        [],
    )
    assert (final["uri"], final["status"], final["summary"]) == (uri, "final", "pool exhaustion")

    review = ["postmortem", "review", incident_id, "--attendee", "alice", "--attendee", "sre-lead"]
    await _ok(service, *review, "--held-at", "2026-03-06T15:00:00+01:00", "--summary", "agreed")
    await _ok(service, *review, "--at", "2026-03-07T10:00:00Z")
    first, second = await _events(service, incident_id, "postmortem.reviewed")
    assert first["held_at"] == "2026-03-06T14:00:00Z"
    assert (list(first["attendees"]), first["summary"]) == (["alice", "sre-lead"], "agreed")
    # Without --held-at the meeting is held when the command says it happened.
    assert second["held_at"] == second["occurred_at"] == "2026-03-07T10:00:00Z"

    both = await _run(service, *publish, "--uri", uri, "--markdown-file", str(document))
    assert "not both" in one_line_error(both, 2)
    unreadable = await _run(service, *publish, "--markdown-file", str(tmp_path / "nope.md"))
    assert "nope.md" in one_line_error(unreadable, 2)
    bad = await _run(service, *publish, "--status", "done")
    assert "(see: incidents postmortem publish --help)" in one_line_error(bad, 2)


async def test_the_draft_verb_keeps_its_short_form(
    service: Service, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    incident_id = await _resolved(http)
    declared = await http.post("/v1/incidents", json={"title": "Still open", "severity": "P3"})
    open_id = declared.json()["incident_id"]
    seq = declared.json()["events"][-1]["seq"]
    await service.projector.wait(seq, timeout=10)
    out = tmp_path / "draft.md"
    gate = asyncio.Semaphore(2)  # `to_thread` shares the pool the service's DuckDB reads use

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        async with gate:
            return await _run(service, *args)

    short, long, written, early = await asyncio.gather(
        run("postmortem", incident_id),
        run("postmortem", "draft", incident_id),
        run("postmortem", "--out", str(out), incident_id),
        run("postmortem", "review", open_id, "--attendee", "x"),
    )
    assert short.returncode == 0 and short.stdout.startswith(f"# Postmortem: {incident_id}")
    assert long.stdout == short.stdout
    assert written.stdout == f"wrote {out}\n"
    assert out.read_text(encoding="utf-8") == short.stdout
    assert "publish the postmortem before recording its review" in one_line_error(early, 2)
