"""As-of reconstruction of one long incident (`GET /v1/incidents/{id}/timeline?as_of=`, a fold
of its log) against the same route without `as_of` (the live projection), the service running
in this process so that `--profile` sees both."""

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import p50_p95_ms
from bench.results import Row, row
from services.bootstrap import running
from services.config import Config


async def asof_row(nats_url: str, data_dir: Path, events: int, samples: int) -> Row:
    config = Config(nats_url=nats_url, data_dir=data_dir, http_port=0)
    async with (
        running(config) as service,
        httpx.AsyncClient(base_url=service.http_url, timeout=60) as http,
    ):
        path, seq = await _long_incident(http, events)
        await http.get(path, params={"wait_for": seq})
        as_of = datetime.now(UTC).isoformat()
        past = await _timed(http, path, {"as_of": as_of}, events, samples)
        live = await _timed(http, path, {}, events, samples)
    (p50, p95), (live_p50, live_p95) = p50_p95_ms(past), p50_p95_ms(live)
    return row(
        "asof",
        f"as-of of a {events:,}-event incident ({samples} runs)",
        p95,
        "ms",
        f"p50 {p50:,.1f} ms, p95 {p95:,.1f} ms",
        [("the live projection of the same timeline, p95", live_p95, "ms")],
        details={"p50_ms": p50, "p95_ms": p95, "live_p50_ms": live_p50},
    )


async def _long_incident(http: httpx.AsyncClient, events: int) -> tuple[str, int]:
    declared = await http.post("/v1/incidents", json={"title": "long", "severity": "P2"})
    declared.raise_for_status()
    incident_id = declared.json()["incident_id"]
    notes = [
        {
            "type": "incident.note_added",
            "event_id": f"n{n}",
            "incident_id": incident_id,
            "occurred_at": "2026-11-20T10:00:00Z",
            "actor": "bench",
            "source": "api",
            "text": f"note {n}",
        }
        for n in range(events - 1)
    ]
    seq = 0
    for base in range(0, len(notes), 500):
        answer = await http.post("/v1/events", json=notes[base : base + 500])
        answer.raise_for_status()
        seq = answer.json()["events"][-1]["seq"]
    return f"/v1/incidents/{incident_id}/timeline", seq


async def _timed(
    http: httpx.AsyncClient, path: str, params: dict[str, str], events: int, samples: int
) -> list[float]:
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        answer = await http.get(path, params=params)
        timings.append(time.perf_counter() - start)
        answer.raise_for_status()
        if len(answer.json()["events"]) != events:
            raise RuntimeError(f"{path} {params}: not the {events} events written")
    return timings
