"""HTTP ingest throughput of `incidents serve` against raw nats-py publishes on the same server.

    uv run python -m bench.ingest [--events N] [--concurrency C]

Starts a nats-server (file store, `sync_interval: always`, as the embedded default) and the
real service as a child process (`incidents serve`, HTTP on a free port), then measures: raw
`js.publish` (sequential and pipelined), `POST /v1/events` with one event per request
(sequential and C requests in flight), and batches of 100 events per request.

Single-event requests are driven by `wrk` when it is installed (`apt-get install wrk`): a
Python client costs more CPU per request than the service and would measure itself on a
2-core machine. Without wrk they fall back to httpx, and the table says so.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import nats
from rich.console import Console
from rich.table import Table

from bench.common import rate, raw_publish_rates, sequential_count, windows
from services.natsserver import EmbeddedNatsServer, free_port

T = "2026-11-20T10:00:00Z"


def _event(kind: str, incident: int, n: int) -> dict[str, Any]:
    base = {
        "event_id": f"{kind}-{incident}-{n}",
        "incident_id": f"INC-BENCH{incident:04d}",
        "occurred_at": T,
        "actor": "bench",
        "source": "synthetic",
    }
    if kind == "decl":
        return {**base, "type": "incident.declared", "title": "bench", "severity": "P3"}
    return {**base, "type": "incident.note_added", "text": f"observation {n}"}


async def measure(nats_url: str, http_url: str, events: int, concurrency: int) -> dict[str, float]:
    nc = await nats.connect(nats_url)
    rates = await raw_publish_rates(nc.jetstream(), events, concurrency)
    await nc.close()
    sequential = sequential_count(events)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=http_url, limits=limits, timeout=60) as http:

        async def post(body: object) -> None:
            answer = await http.post("/v1/events", json=body)
            answer.raise_for_status()

        incidents = 32  # as in wrk_post_event.lua
        await post([_event("decl", i, 0) for i in range(incidents)])

        async def http_seq() -> None:
            for n in range(sequential):
                await post(_event("seq", n % incidents, n))

        wrk = shutil.which("wrk")
        client = "wrk" if wrk else "httpx"
        if wrk:
            rates[f"POST /v1/events, 1 event, sequential ({client})"] = _wrk(wrk, http_url, 1)
            rates[f"POST /v1/events, 1 event, {concurrency} in flight ({client})"] = _wrk(
                wrk, http_url, concurrency
            )
        else:
            rates[f"POST /v1/events, 1 event, sequential ({client})"] = await rate(
                sequential, http_seq
            )
            rates[f"POST /v1/events, 1 event, {concurrency} in flight ({client})"] = await rate(
                events,
                lambda: windows(
                    events, concurrency, lambda n: post(_event("par", n % incidents, n))
                ),
            )
        batches = max(events // 100, 10)

        async def http_batches() -> None:
            # One batch per incident at a time: 100 events of one incident = one atomic append.
            await windows(
                batches,
                min(concurrency, 8),
                lambda b: post([_event(f"b{b}", b % incidents, n) for n in range(100)]),
            )

        rates["POST /v1/events, batches of 100, pipelined"] = await rate(
            batches * 100, http_batches
        )
    return rates


WRK_SCRIPT = Path(__file__).with_name("wrk_post_event.lua")


def _wrk(wrk: str, url: str, connections: int, seconds: int = 5) -> float:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(WRK_SCRIPT), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def report(rates: dict[str, float]) -> None:
    table = Table(title="HTTP ingest (events/s; ratio to raw js.publish, same mode)")
    for column in ("mode", "events/s", "ratio"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, measured in rates.items():
        sequential = "sequential" in mode
        baseline = rates["raw js.publish, " + ("sequential" if sequential else "pipelined")]
        table.add_row(mode, f"{measured:,.0f}", f"{measured / baseline:.2f}")
    Console().print(table)


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"incidents serve exited with {proc.returncode}")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("incidents serve did not become healthy")


def main(events: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNatsServer(Path(tmp) / "nats") as server:
        port = free_port()
        env = {
            **os.environ,
            "INCIDENTS_NATS_URL": server.url,
            "INCIDENTS_HTTP": f"127.0.0.1:{port}",
            "INCIDENTS_DATA_DIR": str(Path(tmp) / "var"),
        }
        incidents = str(Path(sys.executable).parent / "incidents")
        proc = subprocess.Popen([incidents, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(_wait_healthy(url, proc))
            rates = asyncio.run(measure(server.url, url, events, concurrency))
        finally:
            proc.terminate()
            proc.wait(30)
    report(rates)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    main(args.events, args.concurrency)
