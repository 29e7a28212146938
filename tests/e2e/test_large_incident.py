"""Writes into a long incident neither stall the service nor slow down with its length.

Issue 11, point 5: a 1,000-event batch into a 50k-event incident blocked the event loop for
13 s (a scan of the whole history per command), and the first write after a restart into a long
incident took most of a minute. The loop lag is measured on the service's own event loop (the
service runs in the test's process), with a bound far above what a healthy write costs.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from events.commands import Declare, Record
from events.schema import IncidentNoteAdded, Severity, Source
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer
from services.write.handler import Accepted

T = datetime(2026, 11, 1, tzinfo=UTC)
LONG = 50_000
# Far above a healthy write's longest step, far below what a scan per command costs.
MAX_STALL_S = 0.5


def _note(incident_id: str, n: int) -> IncidentNoteAdded:
    return IncidentNoteAdded(
        event_id=f"note-{n}",
        incident_id=incident_id,
        occurred_at=T,
        actor="probe",
        source=Source.API,
        text=f"note {n}",
    )


def _body(incident_id: str, start: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "incident.note_added",
            "event_id": f"note-{n}",
            "incident_id": incident_id,
            "occurred_at": "2026-11-01T00:00:00Z",
            "actor": "probe",
            "source": "api",
            "text": f"note {n}",
        }
        for n in range(start, start + count)
    ]


@asynccontextmanager
async def _stalls() -> AsyncIterator[list[float]]:
    """The longest gap between ticks of a 10 ms timer on this event loop, while the block runs."""
    gaps: list[float] = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last - 0.01)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        ticker.cancel()


async def test_a_batch_into_a_long_incident_and_a_cold_restart_do_not_stall(
    service: Service, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    incident_id = "INC-LONG1"
    declare = Declare(
        incident_id=incident_id,
        event_id="d-long",
        occurred_at=T,
        actor="probe",
        source=Source.API,
        title="long",
        severity=Severity.P2,
    )
    assert isinstance(await service.handler.handle(declare), Accepted)
    for start in range(0, LONG, 1000):
        batch = [Record(_note(incident_id, n)) for n in range(start, start + 1000)]
        assert isinstance(await service.handler.handle_batch({incident_id: batch}), Accepted)

    async with httpx.AsyncClient(base_url=service.http_url, timeout=60) as http, _stalls() as gap:
        answer = await http.post("/v1/events", json=_body(incident_id, LONG, 1000))
    assert answer.status_code == 200, answer.text
    assert gap[0] < MAX_STALL_S, f"the event loop stalled {gap[0]:.2f} s"

    # A second instance knows nothing of the incident: its first write loads it from the log.
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "cold", http_port=0)
    async with (
        running(config) as cold,
        httpx.AsyncClient(base_url=cold.http_url, timeout=60) as http,
        _stalls() as gap,
    ):
        first = await http.post("/v1/events", json=_body(incident_id, LONG + 1000, 1))
        retried = await http.post("/v1/events", json=_body(incident_id, 5, 1))
    assert first.status_code == 200, first.text
    assert [e["duplicate"] for e in retried.json()["events"]] == [True]
    assert gap[0] < MAX_STALL_S, f"the event loop stalled {gap[0]:.2f} s"
    assert await service.store.incident_last_seq(incident_id) == LONG + 1000 + 2
