"""SQL for auditors cannot take the service down (issue 11, point 7), over real HTTP.

Only SELECT runs (by DuckDB's statement type); nothing answers with a server path; a query over
the memory limit fails with 400 naming `sql` while the process lives on; a huge result is cut by
bytes while the event loop keeps answering; the projector keeps projecting meanwhile.
"""

import asyncio
from pathlib import Path

import httpx
import pytest

from projections import sandbox
from services.bootstrap import Service

REFUSED = [
    "CREATE TEMP TABLE loot AS SELECT * FROM range(100000000)",
    "CREATE TABLE loot AS SELECT 1",
    "FORCE CHECKPOINT",
    "CHECKPOINT",
    "PRAGMA database_list",
    "PRAGMA force_checkpoint",
    "SET threads = 1",
    "SET memory_limit = '100GB'",
    "RESET memory_limit",
    "ATTACH '/tmp/other.duckdb' AS other",
    "DETACH incidents",
    "COPY events TO '/tmp/stolen.csv'",
    "EXPORT DATABASE '/tmp/stolen'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL pragma_database_list()",
    "BEGIN TRANSACTION",
    "VACUUM",
    "PREPARE p AS SELECT 1",
    "PIVOT events ON type",
    "SELECT * FROM force_checkpoint()",
    "SELECT * FROM query('SELECT 1')",
]


@pytest.mark.parametrize("sql", REFUSED)
async def test_only_select_runs(http: httpx.AsyncClient, sql: str) -> None:
    answer = await http.post("/v1/query", json={"sql": sql})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "sql"
    # Refused for what it is, before it runs: not left to DuckDB's settings to stop.
    assert "not allowed" in answer.json()["detail"]
    assert not Path("/tmp/stolen.csv").exists()


REVEALING = [
    "SELECT * FROM duckdb_settings()",
    "SELECT value FROM duckdb_settings() WHERE name = 'temp_directory'",
    "PRAGMA database_list",
    "SELECT * FROM pragma_database_list()",
    "SELECT path FROM duckdb_databases()",
    "SELECT * FROM duckdb_databases",
    "SELECT * FROM system.main.duckdb_databases",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT current_setting('temp_directory')",
    "SELECT current_setting('home_directory')",
    "SELECT current_setting('allowed_directories')",
    "WITH duckdb_settings AS (SELECT 1) SELECT * FROM duckdb_settings()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM read_csv('/etc/passwd')",
]


@pytest.mark.parametrize("sql", REVEALING)
async def test_no_answer_reveals_a_server_path(
    http: httpx.AsyncClient, service: Service, sql: str
) -> None:
    answer = await http.post("/v1/query", json={"sql": sql})
    assert answer.status_code == 400, answer.text
    data_dir = service.config.data_dir
    for secret in {str(data_dir), str(data_dir.resolve()), str(Path.home()), "/tmp/"}:
        assert secret not in answer.text, (sql, answer.text)


async def test_reads_still_work(http: httpx.AsyncClient) -> None:
    for sql in [
        "SELECT severity, count(*) FROM incidents GROUP BY ALL",
        "WITH recent AS (SELECT * FROM events) SELECT count(*) FROM recent",
        "DESCRIBE events",
        "SHOW TABLES",
        "SELECT current_setting('TimeZone') AS zone",
        "SELECT sum(i) FROM range(10) t(i)",
        "FROM timeline",
    ]:
        answer = await http.post("/v1/query", json={"sql": sql})
        assert answer.status_code == 200, (sql, answer.text)


async def test_a_query_over_the_memory_limit_is_400_and_the_service_lives(
    http: httpx.AsyncClient,
) -> None:
    # A list of 400 million numbers: 3.2 GB if it were let grow.
    hungry = "SELECT length(list(i)) FROM range(400000000) t(i)"
    answer = await http.post("/v1/query", json={"sql": hungry}, timeout=60)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "sql"
    assert "memory" in answer.json()["detail"]
    assert (await http.get("/healthz")).status_code == 200
    again = await http.post("/v1/query", json={"sql": "SELECT 42 AS n"})
    assert again.json()["rows"] == [[42]]


async def _healthy_meanwhile(http: httpx.AsyncClient, task: "asyncio.Task[httpx.Response]") -> int:
    """/healthz answers (each within a generous 5 s) while `task` runs; how many times."""
    answered = 0
    while not task.done() or answered == 0:
        health = await http.get("/healthz", timeout=5)
        assert health.status_code == 200
        answered += 1
        await asyncio.sleep(0.05)
    return answered


async def test_a_huge_result_is_cut_by_bytes_and_the_loop_keeps_answering(
    http: httpx.AsyncClient,
) -> None:
    # 10,000 rows of 100 kB: a 1 GB answer if nothing cut it.
    huge = "SELECT repeat('x', 100000) AS s FROM range(10000)"
    task = asyncio.create_task(http.post("/v1/query", json={"sql": huge}, timeout=60))
    await _healthy_meanwhile(http, task)
    answer = await task
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.content) <= sandbox.MAX_BYTES
    body = answer.json()
    assert body["truncated"] is True
    assert 0 < len(body["rows"]) < 10_000


async def test_the_projector_keeps_projecting_during_a_heavy_query(
    http: httpx.AsyncClient, service: Service
) -> None:
    heavy = "SELECT count(*) FROM range(100000000000) a"  # runs until the time limit
    task = asyncio.create_task(http.post("/v1/query", json={"sql": heavy}, timeout=60))
    await asyncio.sleep(0.3)
    for n in range(3):
        # Looping checkpoints used to stall the projector: refused at once now.
        checkpoint = await http.post("/v1/query", json={"sql": "FORCE CHECKPOINT"}, timeout=5)
        assert checkpoint.status_code == 400, checkpoint.text
        declared = await http.post(
            "/v1/incidents", json={"title": f"Heavy {n}", "severity": "P3"}, timeout=10
        )
        assert declared.status_code == 201, declared.text
        seq = declared.json()["events"][-1]["seq"]
        incident_id = declared.json()["incident_id"]
        shown = await http.get(f"/v1/incidents/{incident_id}", params={"wait_for": seq}, timeout=10)
        assert shown.status_code == 200, shown.text
    assert (await http.get("/healthz", timeout=5)).status_code == 200
    answer = await task
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert "longer than" in answer.json()["detail"]
