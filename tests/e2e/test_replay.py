"""Replay during live ingest: the swapped-in models equal a fresh fold; readers never fail."""

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from tests_support import fresh_fold, run_cli, snapshot

from projections import rebuild as rebuilds
from services import readmodels
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


async def _status(http: httpx.AsyncClient) -> dict[str, object]:
    for _ in range(2400):  # generous: CI machines are shared and slow
        status: dict[str, object] = (await http.get("/v1/admin/replay")).json()
        if status["state"] in ("done", "failed"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("replay did not finish")


async def test_replay_during_ingest_swaps_in_a_fresh_fold_without_reader_errors(
    http: httpx.AsyncClient, service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readmodels, "RETIRE_AFTER_S", 0.2)
    ids = []
    for n in range(20):
        answer = await http.post("/v1/incidents", json={"title": f"load {n}", "severity": "P3"})
        ids.append(answer.json()["incident_id"])
    for n in range(300):
        await http.post(f"/v1/incidents/{ids[n % 20]}/notes", json={"text": f"note {n}"})

    stop = asyncio.Event()
    failures: list[str] = []
    last_seq = 0

    async def write() -> None:
        nonlocal last_seq
        n = 0
        while not stop.is_set():
            answer = await http.post(
                f"/v1/incidents/{ids[n % 20]}/notes", json={"text": f"live {n}"}
            )
            last_seq = max(last_seq, answer.json()["events"][0]["seq"])
            n += 1

    async def read() -> None:
        while not stop.is_set():
            for path in ("/v1/incidents", f"/v1/incidents/{ids[0]}/timeline", "/v1/audit"):
                answer = await http.get(path)
                if answer.status_code != 200:
                    failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
            answer = await http.post("/v1/query", json={"sql": "SELECT count(*) FROM events"})
            if answer.status_code != 200:
                failures.append(f"query: {answer.status_code} {answer.text[:200]}")

    load = [asyncio.create_task(write()), *(asyncio.create_task(read()) for _ in range(3))]
    before = rebuilds.live_path(service.config.data_dir)
    started = await http.post("/v1/admin/replay", json={"verify": True})
    assert started.status_code == 202
    assert (await http.post("/v1/admin/replay")).status_code == 409  # one at a time
    status = await _status(http)
    await asyncio.sleep(0.3)  # readers keep going across the retirement of the old file
    stop.set()
    await asyncio.gather(*load)

    assert status["state"] == "done", status
    assert status["differences"] == []
    assert failures == []
    after = rebuilds.live_path(service.config.data_dir)
    assert after != before and after.name == status["generation"]
    assert (service.config.data_dir / "incidents.duckdb").is_symlink()
    # The first build was a plain file; its name now holds the link to generation 1.
    assert before == service.config.data_dir.resolve() / "incidents.duckdb"

    await service.projector.wait(last_seq)
    await service.projector.wait(await service.store.last_seq())
    cur = service.con.cursor()
    try:
        live = snapshot(cur)
    finally:
        cur.close()
    assert live == await fresh_fold(service.store, tmp_path / "fresh.duckdb")

    again = await http.post("/v1/admin/replay", json={"verify": True})
    assert again.status_code == 202
    second = await _status(http)
    assert second["state"] == "done" and second["differences"] == [], second
    await asyncio.sleep(0.5)
    assert rebuilds.live_path(service.config.data_dir).name == "incidents-2.duckdb"
    assert not after.exists()  # generation 1 retired once its readers were done


async def test_direct_replay_cli_is_resumable_and_verifies(
    nats_server: EmbeddedNatsServer, service: Service, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    for n in range(5):
        await http.post("/v1/incidents", json={"title": f"direct {n}", "severity": "P2"})
    env = {
        **os.environ,
        "INCIDENTS_NATS_URL": nats_server.url,
        "INCIDENTS_DATA_DIR": str(tmp_path / "offline"),
    }

    first = await run_cli(env, "replay", "--direct")
    assert first.returncode == 0, first.stderr
    assert "rebuilt through sequence 5" in first.stderr
    second = await run_cli(env, "replay", "--direct", "--verify")
    assert second.returncode == 0, second.stderr
    assert "verify: identical" in second.stderr
    live = rebuilds.live_path(tmp_path / "offline")
    assert live.name == "incidents-2.duckdb"
    assert not (live.parent / "incidents-1.duckdb").exists()

    busy = {**env, "INCIDENTS_DATA_DIR": str(service.config.data_dir)}
    refused = await run_cli(busy, "replay", "--direct")
    assert refused.returncode == 2
    assert "running service" in refused.stderr


async def test_a_generation_left_by_a_crash_after_a_swap_is_removed_at_start(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    """A service killed after switching to a new generation, before its grace period for
    readers ended, leaves the old file and its write-ahead log behind; the next start removes
    them, and keeps the current generation and a `next` build that a replay may resume."""
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0)
    async with running(config) as service:
        status = await service.models.replay(verify=False)
        assert status.state == "done", status.error
        current = rebuilds.live_path(config.data_dir)
    folder = config.data_dir / rebuilds.GENERATIONS
    # What the crash leaves: an older generation, its WAL, and a half-built next generation.
    left = [folder / "incidents-0.duckdb", folder / "incidents-0.duckdb.wal"]
    for path in left:
        path.write_bytes(b"old generation")
    building = rebuilds.next_path(config.data_dir)
    building.write_bytes(b"next build")
    async with running(config) as service:
        assert rebuilds.live_path(config.data_dir) == current
        assert service.models.reader.projector.checkpoint >= 0
    assert [p for p in left if p.exists()] == []
    assert current.exists() and building.exists()
