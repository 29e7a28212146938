"""Records on `incidents.>` that do not decode are quarantined, never a reason to stop projecting;
any other death of the projector is visible in `/readyz` and restarted with backoff (issue 11.1).

Every record here goes into the real stream with a raw JetStream publish, as a stray client or
a newer replica during a rolling upgrade would write it.
"""

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from nats.aio.client import Client as NATS
from tests_support import run_cli, snapshot

from projections import rebuild as rebuilds
from projections.database import open_database
from services import readmodels
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer

GARBAGE = b"\xff\xfe not json at all {"
QUARANTINE_SQL = "SELECT seq, subject, reason, raw FROM quarantine ORDER BY seq"


def future_event(incident_id: str) -> bytes:
    """Well-formed JSON of a type this version does not know (a newer replica wrote it)."""
    return (
        '{"type":"incident.future_thing","event_id":"evt-future-1",'
        f'"incident_id":"{incident_id}","occurred_at":"2026-11-01T12:00:00Z",'
        '"actor":"zoe@example.com","source":"api","hash":"abc","prev_hash":"","novelty":42}'
    ).encode()


async def publish_raw(nc: NATS, subject: str, data: bytes, stream: str = "INCIDENTS") -> int:
    ack = await nc.jetstream().publish(subject, data, stream=stream)
    return int(ack.seq)


async def declare(http: httpx.AsyncClient, title: str = "Checkout 5xx") -> tuple[str, int]:
    answer = await http.post("/v1/incidents", json={"title": title, "severity": "P2"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["incident_id"], body["events"][-1]["seq"]


async def add_note(http: httpx.AsyncClient, incident_id: str, text: str) -> int:
    answer = await http.post(f"/v1/incidents/{incident_id}/notes", json={"text": text})
    assert answer.status_code in (200, 201), answer.text
    seq: int = answer.json()["events"][0]["seq"]
    return seq


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def quarantine_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    cur = con.cursor()
    try:
        return cur.execute(QUARANTINE_SQL).fetchall()
    finally:
        cur.close()


def models(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model, the quarantine included."""
    cur = con.cursor()
    try:
        return {**snapshot(cur), "quarantine": cur.execute(QUARANTINE_SQL).fetchall()}
    finally:
        cur.close()


async def rebuilt_from_scratch(service: Service, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """fold(log): the read models a fresh replay of the whole log builds."""
    await rebuilds.rebuild(service.store, path)
    con = open_database(path)
    try:
        return models(con)
    finally:
        con.close()


async def test_undecodable_records_are_quarantined_and_the_next_event_projects(
    http: httpx.AsyncClient, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    incident_id, _ = await declare(http)
    subject = f"incidents.{incident_id}.note_added"
    garbage_seq = await publish_raw(service.nc, subject, GARBAGE)
    future_seq = await publish_raw(service.nc, subject, future_event(incident_id))

    # Writers fold the incident's history past its quarantined records and append after them.
    seq = await add_note(http, incident_id, "after the strays")
    assert seq == future_seq + 1
    timeline = await http.get(f"/v1/incidents/{incident_id}/timeline", params={"wait_for": seq})
    assert timeline.status_code == 200, timeline.text
    assert [e["type"] for e in timeline.json()["events"]] == [
        "incident.declared",
        "incident.note_added",
    ]

    rows = quarantine_rows(service.con)
    assert [(r[0], r[1], bytes(r[3])) for r in rows] == [
        (garbage_seq, subject, GARBAGE),
        (future_seq, subject, future_event(incident_id)),
    ]
    assert "malformed JSON" in rows[0][2]
    assert "incident.future_thing" in rows[1][2]

    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and body["status"] == "degraded"
    assert body["quarantine"]["count"] == 2
    assert body["projector"]["checkpoint"] == seq and body["projector"]["lag"] == 0

    metrics = (await http.get("/metrics")).text
    assert "incidents_quarantined_records 2.0" in metrics  # the serving read models
    counted = re.search(r"^incidents_records_quarantined_total (\S+)$", metrics, re.M)
    assert counted is not None and float(counted.group(1)) >= 2  # the whole process

    # Logged once each, though the projector and the writer both read them.
    logged = [r for r in caplog.records if "quarantined" in r.getMessage()]
    for stray in (garbage_seq, future_seq):
        assert len([r for r in logged if f"seq {stray} " in r.getMessage()]) == 1, logged


async def test_replay_skips_quarantined_records_as_live_projection_does(
    http: httpx.AsyncClient,
    service: Service,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readmodels, "RETIRE_AFTER_S", 0.2)
    incident_id, _ = await declare(http)
    await publish_raw(service.nc, f"incidents.{incident_id}.note_added", GARBAGE)
    other, _ = await declare(http, "Search slow")
    await publish_raw(service.nc, f"incidents.{other}.note_added", future_event(other))
    # The last records of the log are quarantined ones: the position still reaches them.
    await add_note(http, incident_id, "between")
    last = await publish_raw(service.nc, "incidents.INC-X.note_added", GARBAGE)
    await service.projector.wait(last)
    live = models(service.con)
    assert len(live["quarantine"]) == 3
    assert live == await rebuilt_from_scratch(service, tmp_path / "fresh.duckdb")

    started = await http.post("/v1/admin/replay", json={"verify": True})
    assert started.status_code == 202
    for _ in range(600):
        status = (await http.get("/v1/admin/replay")).json()
        if status["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    assert status["state"] == "done", status
    assert status["differences"] == []
    assert models(service.con) == live

    # The replayed generation goes on projecting.
    seq = await add_note(http, other, "after the replay")
    await service.projector.wait(seq)
    assert models(service.con)["checkpoint"] == [(seq,)]


async def test_direct_replay_cli_quarantines_the_same_records(
    nats_server: EmbeddedNatsServer, service: Service, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    incident_id, _ = await declare(http)
    await publish_raw(service.nc, f"incidents.{incident_id}.note_added", GARBAGE)
    await publish_raw(service.nc, f"incidents.{incident_id}.note_added", future_event(incident_id))
    seq = await add_note(http, incident_id, "after")
    await service.projector.wait(seq)
    env = {
        **os.environ,
        "INCIDENTS_NATS_URL": nats_server.url,
        "INCIDENTS_DATA_DIR": str(tmp_path / "offline"),
    }

    first = await run_cli(env, "replay", "--direct")
    assert first.returncode == 0, first.stderr
    assert f"rebuilt through sequence {seq}" in first.stderr
    last = await publish_raw(service.nc, "incidents.INC-X.note_added", GARBAGE)
    await service.projector.wait(last)
    second = await run_cli(env, "replay", "--direct", "--verify")
    assert second.returncode == 0, second.stderr
    assert "verify: identical" in second.stderr

    con = open_database(rebuilds.live_path(tmp_path / "offline"))
    try:
        offline = models(con)
    finally:
        con.close()
    assert offline == models(service.con)
    assert len(offline["quarantine"]) == 3


async def test_a_restarted_service_projects_past_quarantined_records(
    nats_server: EmbeddedNatsServer, nc: NATS, tmp_path: Path
) -> None:
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0)
    async with running(config) as first, httpx.AsyncClient(base_url=first.http_url) as http:
        incident_id, _ = await declare(http)
        stray = await publish_raw(nc, "incidents.INC-X.note_added", GARBAGE)
        seq = await add_note(http, incident_id, "while running")
        await first.projector.wait(seq)
    # Written while no service runs: the next one meets it first thing.
    future = await publish_raw(nc, f"incidents.{incident_id}.note_added", future_event(incident_id))
    async with running(config) as second, httpx.AsyncClient(base_url=second.http_url) as http:
        seq = await add_note(http, incident_id, "after the restart")
        await second.projector.wait(seq)
        assert [r[0] for r in quarantine_rows(second.con)] == [stray, future]
        body = (await http.get("/readyz")).json()
        assert body["status"] == "degraded" and body["quarantine"]["count"] == 2
        timeline = (await http.get(f"/v1/incidents/{incident_id}/timeline")).json()
        assert [e["body"].get("text") for e in timeline["events"]] == [
            None,
            "while running",
            "after the restart",
        ]


@pytest.fixture
async def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setattr(readmodels, "RESTART_AFTER_S", 0.05, raising=False)
    monkeypatch.setattr(readmodels, "RESTART_AT_MOST_S", 0.4, raising=False)
    yield


async def test_a_projector_that_dies_is_shown_not_ready_and_restarted_with_backoff(
    fast_backoff: None, http: httpx.AsyncClient, service: Service
) -> None:
    incident_id, declared = await declare(http)
    await service.projector.wait(declared)
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text

    # A real fault: a row squats on the sequence the projector writes next (a file restored
    # from elsewhere) under a unique index (`events` has no key of its own since schema 7),
    # so its transaction fails on the key, again at every restart.
    squatted = declared + 1
    service.con.execute(
        "INSERT INTO events SELECT * REPLACE (? AS seq, 'evt-squatter' AS event_id) "
        "FROM events LIMIT 1",
        [squatted],
    )
    service.con.execute("CREATE UNIQUE INDEX events_seq ON events (seq)")
    assert await add_note(http, incident_id, "blocked") == squatted

    async def failing() -> bool:
        answer = await http.get("/readyz")
        return answer.status_code == 503 and answer.json()["projector"]["restarts"] >= 2

    await until(failing)
    body = (await http.get("/readyz")).json()
    assert body["ready"] is False
    assert "Duplicate key" in body["reason"] and "projector" in body["reason"]
    assert "Duplicate key" in body["projector"]["failure"]
    metrics = (await http.get("/metrics")).text
    assert "incidents_projector_up 0.0" in metrics
    assert "incidents_projector_restarts_total" in metrics

    # Backoff, not a hot loop: delays 0.05, 0.1, 0.2, 0.4, 0.4... s.
    before = body["projector"]["restarts"]
    await asyncio.sleep(1.2)
    after = (await http.get("/readyz")).json()["projector"]["restarts"]
    assert 1 <= after - before <= 8, (before, after)

    # Fault removed: the next restart projects the blocked event and the service is ready.
    service.con.execute("DELETE FROM events WHERE event_id = 'evt-squatter'")

    async def recovered() -> bool:
        return (await http.get("/readyz")).status_code == 200

    await until(recovered)
    await service.projector.wait(squatted)
    body = (await http.get("/readyz")).json()
    assert body["status"] == "ready" and body["projector"]["lag"] == 0
    metrics = (await http.get("/metrics")).text
    assert "incidents_projector_up 1.0" in metrics
    timeline = (await http.get(f"/v1/incidents/{incident_id}/timeline")).json()
    assert timeline["events"][-1]["body"]["text"] == "blocked"
