"""The postmortem draft end to end: the `/v1/incidents/{id}/postmortem` route and its verb."""

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec
from tests_support import run_cli

from services.bootstrap import Service


async def _incident(http: httpx.AsyncClient) -> tuple[str, int]:
    """A short P2, driven over HTTP: its id and the sequence of its last event."""
    seqs: list[int] = []

    async def post(path: str, **body: Any) -> dict[str, Any]:
        answer = await http.post(path, json={"actor": "alice@example.com", **body})
        assert answer.status_code in (200, 201), (path, answer.text)
        decoded: dict[str, Any] = answer.json()
        seqs.extend(event["seq"] for event in decoded["events"])
        return decoded

    def at(hhmm: str) -> str:
        return f"2026-03-04T{hhmm}:00Z"

    declared = await post(
        "/v1/incidents",
        title="Search | slow",
        severity="P2",
        services=["search"],
        summary="Search latency p99 above 2s.",
        commander="alice@example.com",
        occurred_at=at("10:00"),
    )
    on = f"/v1/incidents/{declared['incident_id']}"
    await post(f"{on}/ack", occurred_at=at("10:20"), actor="bob@example.com")
    comms = {"audience": "internal", "kind": "initial", "message": "Looking into it"}
    await post(f"{on}/comms", **comms, occurred_at=at("10:30"))
    mitigation = {"mitigation_id": "m1", "action": "scale", "target": "search-api"}
    await post(f"{on}/mitigations", **mitigation, occurred_at=at("10:40"))
    await post(
        f"{on}/mitigations/complete",
        mitigation_id="m1",
        outcome="succeeded",
        occurred_at=at("10:50"),
    )
    await post(f"{on}/notes", text="a cold cache", kind="root_cause", occurred_at=at("10:55"))
    await post(f"{on}/resolve", summary="scaled out", occurred_at=at("11:05"))
    return declared["incident_id"], max(seqs)


async def _run(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTS_URL": service.http_url}
    env.pop("INCIDENTS_TOKEN", None)
    return await run_cli(env, *args)


async def test_postmortem_route(http: httpx.AsyncClient) -> None:
    incident_id, seq = await _incident(http)
    answer = await http.get(f"/v1/incidents/{incident_id}/postmortem", params={"wait_for": seq})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/markdown; charset=utf-8"
    text = answer.text
    assert text.startswith(f"# Postmortem: {incident_id} — Search | slow\n")
    for expected in (
        f"| Incident | {incident_id} |",
        "| Title | Search \\| slow |",
        "**What happened:** Search latency p99 above 2s.",
        "**Resolution:** scaled out",
        "| 2026-03-04 10:20:00Z | bob@example.com | Acknowledged |  |  |",
        "| 2026-03-04 10:40:00Z | alice@example.com | Mitigation started | m1: scale search-api |",
        "## Response metrics",
        "| Measure | This incident | Target (P2) | Result |",
        "| Time to acknowledge | 20m | 1h | met |",
        "| Time to resolve | 1h 05m | 1d | met |",
        "| Postmortem published after resolution | _not yet_ | 5d | pending |",
        "- a cold cache — alice@example.com, 2026-03-04 10:55:00Z",
        f"Generated from stream sequences 1..{seq} of {incident_id} ({seq} events).",
    ):
        assert expected in text, (expected, text)
    again = await http.get(f"/v1/incidents/{incident_id}/postmortem")
    assert again.text == text  # no clock in the draft

    missing = await http.get("/v1/incidents/INC-NOSUCH1/postmortem")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert "INC-NOSUCH1" in missing.json()["detail"]


async def test_postmortem_verb(service: Service, http: httpx.AsyncClient, tmp_path: Path) -> None:
    incident_id, seq = await _incident(http)
    await service.projector.wait(seq, timeout=10)
    expected = (await http.get(f"/v1/incidents/{incident_id}/postmortem")).text
    out = tmp_path / "pm.md"
    gate = asyncio.Semaphore(2)  # `to_thread` shares the pool the service's DuckDB reads use

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        async with gate:
            return await _run(service, "postmortem", *args)

    printed, written, unknown = await asyncio.gather(
        run(incident_id), run(incident_id, "--out", str(out)), run("INC-NOSUCH1")
    )
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    assert printed.stdout == expected
    assert written.returncode == 0, written.stderr
    assert written.stdout == f"wrote {out}\n"
    assert out.read_text(encoding="utf-8") == expected
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: ") and "does not exist" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


async def _published(service: Service, incident_id: str) -> list[dict[str, Any]]:
    loaded = await service.store.load(incident_id)
    events = [msgspec.to_builtins(stored.event) for stored in loaded.events]
    return [e for e in events if e["type"] == "postmortem.published"]


async def test_publishing_without_a_document_publishes_the_draft(
    service: Service, http: httpx.AsyncClient
) -> None:
    incident_id, seq = await _incident(http)
    on = f"/v1/incidents/{incident_id}/postmortem"
    draft = (await http.get(on, params={"wait_for": seq})).text
    authors = ["alice@example.com", "bob@example.com"]
    first = await http.post(on, json={"authors": authors, "status": "draft", "summary": "v1"})
    assert first.status_code == 200, first.text
    [event] = first.json()["events"]
    assert (event["type"], event["incident_id"]) == ("postmortem.published", incident_id)
    [stored] = await _published(service, incident_id)
    assert stored["markdown"] == draft  # the whole log's draft, as it was when published
    assert (stored["uri"], list(stored["authors"]), stored["status"]) == (None, authors, "draft")

    second = await http.post(on, json={"uri": "https://wiki/pm-1", "status": "in_review"})
    assert second.status_code == 200, second.text
    now = (await http.get(on, params={"wait_for": second.json()["events"][0]["seq"]})).text
    for expected in (
        "| Postmortem status | in_review (published ",
        "| Postmortem authors | alice@example.com, bob@example.com |",  # kept: none named
        "| Published postmortem | https://wiki/pm-1 |",
        "| Postmortem review | _not held_ |",
        "| Postmortem published | inline Markdown (draft, by alice@example.com, "
        "bob@example.com): v1 |",
    ):
        assert expected in now, (expected, now)

    missing = await http.post("/v1/incidents/INC-NOSUCH1/postmortem", json={})
    assert missing.status_code == 404, missing.text


async def test_a_draft_too_long_to_publish_inline_is_refused(http: httpx.AsyncClient) -> None:
    incident_id, _ = await _incident(http)
    on = f"/v1/incidents/{incident_id}"
    for n in range(4):  # 4 x 16 KiB of notes: a draft over the 48 KiB of an inline document
        note = await http.post(f"{on}/notes", json={"text": f"{n}" + "x" * (16 * 1024 - 1)})
        assert note.status_code == 200, note.text
    refused = await http.post(f"{on}/postmortem", json={"status": "draft"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "markdown"
    assert "give its uri" in refused.json()["detail"]
    elsewhere = await http.post(f"{on}/postmortem", json={"uri": "https://wiki/pm-big"})
    assert elsewhere.status_code == 200, elsewhere.text


async def test_the_review_meeting(http: httpx.AsyncClient) -> None:
    declared = await http.post("/v1/incidents", json={"title": "Open still", "severity": "P3"})
    unresolved = f"/v1/incidents/{declared.json()['incident_id']}/postmortem"
    early = await http.post(unresolved, json={})
    assert early.status_code == 409, early.text  # decide: published after the resolution

    incident_id, _ = await _incident(http)
    on = f"/v1/incidents/{incident_id}/postmortem"
    review = {
        "held_at": "2026-03-06T15:00:00+01:00",
        "attendees": ["alice@example.com", "sre-lead"],
        "summary": "Agreed the action items",
        "actor": "carol@example.com",
    }
    before = await http.post(f"{on}/review", json=review)
    assert before.status_code == 409, before.text
    assert "publish the postmortem" in before.json()["detail"]
    assert (await http.post(on, json={"uri": "https://wiki/pm-2"})).status_code == 200
    naive = await http.post(f"{on}/review", json=review | {"held_at": "2026-03-06T15:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "held_at", naive.text
    held = await http.post(f"{on}/review", json=review)
    assert held.status_code == 200, held.text
    [event] = held.json()["events"]
    assert event["type"] == "postmortem.reviewed"
    text = (await http.get(on, params={"wait_for": event["seq"]})).text
    for expected in (
        "| Postmortem review | 2026-03-06 14:00:00Z with alice@example.com, sre-lead |",
        "| 2026-03-06 14:00:00Z | alice@example.com, sre-lead | Agreed the action items | "
        "carol@example.com |",
    ):
        assert expected in text, (expected, text)
