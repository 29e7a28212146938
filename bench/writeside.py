"""The write rows under one nats-server fsync policy: raw js.publish baselines, the in-process
CommandHandler, then `incidents serve`'s HTTP intake and webhook, all on the same server."""

import asyncio
from pathlib import Path

import nats

from bench.append import append_row, handle_rate
from bench.common import RawPublishes, raw_publishes
from bench.ingest import http_rows
from bench.profiling import profiled
from bench.progress import Steps
from bench.results import Row
from bench.sizes import Sizes
from services.natsserver import EmbeddedNatsServer

STEPS = 3
SYNCS = {"always": True, "default": False}  # nats-server `sync_interval: always`, or its default


def write_side(tmp: Path, sync: str, sizes: Sizes, steps: Steps, profile: Path | None) -> list[Row]:
    with EmbeddedNatsServer(tmp / f"nats-{sync}", sync_always=SYNCS[sync]) as server:
        with steps.step(f"[{sync}] raw js.publish, sequential and pipelined"):
            raw = asyncio.run(_raw(server.url, sizes))
        with (
            steps.step(f"[{sync}] CommandHandler.handle, pipelined"),
            profiled(profile, f"append-{sync}"),
        ):
            handled = asyncio.run(handle_rate(server.url, sizes.pipelined))
        with steps.step(f"[{sync}] incidents serve: HTTP events, batches, Alertmanager webhook"):
            http = asyncio.run(http_rows(server.url, tmp / f"serve-{sync}", sizes, sync, raw))
    return [*http, append_row(sync, sizes.pipelined, handled, raw.window_256)]


async def _raw(url: str, sizes: Sizes) -> RawPublishes:
    nc = await nats.connect(url)
    try:
        return await raw_publishes(nc.jetstream(), sizes.sequential, sizes.pipelined)
    finally:
        await nc.close()
