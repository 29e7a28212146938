"""As-of reconstruction latency for one incident of N events (default 1,000).

    uv run python -m bench.asof [--events N]

Runs the service in-process on a fresh nats-server, writes one incident of N events through
the HTTP API, then times `GET /v1/incidents/{id}/timeline?as_of=` (a fold of the log) against
the same route without `as_of` (the live projection), median of 7 each.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from services.bootstrap import running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


async def measure(url: str, events: int) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        declared = await http.post("/v1/incidents", json={"title": "long", "severity": "P2"})
        incident_id = declared.json()["incident_id"]
        batch = [
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
        for base in range(0, len(batch), 500):
            answer = await http.post("/v1/events", json=batch[base : base + 500])
            seq = answer.json()["events"][-1]["seq"]
        path = f"/v1/incidents/{incident_id}/timeline"
        await http.get(path, params={"wait_for": seq})
        as_of = datetime.now(UTC).isoformat()

        async def timed(params: dict[str, str]) -> float:
            samples = []
            for _ in range(7):
                start = time.perf_counter()
                answer = await http.get(path, params=params)
                samples.append(time.perf_counter() - start)
                assert len(answer.json()["events"]) == events
            return statistics.median(samples)

        return await timed({"as_of": as_of}), await timed({})


def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNatsServer(Path(tmp) / "nats") as server:

        async def run() -> tuple[float, float]:
            config = Config(nats_url=server.url, data_dir=Path(tmp) / "var", http_port=0)
            async with running(config) as service:
                return await measure(service.http_url, events)

        as_of, live = asyncio.run(run())
    Console().print(
        f"incident of {events:,} events: as-of reconstruction {as_of * 1000:.0f} ms, "
        f"live projection {live * 1000:.0f} ms (median of 7; ratio {as_of / live:.1f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    main(parser.parse_args().events)
