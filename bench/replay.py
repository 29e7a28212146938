"""Replay of a large log: `incidents replay --direct` over N events (default 1,000,000).

    uv run python -m bench.replay [--events N]

Generates N sealed events (incidents of ~10 events) into a fresh nats-server, then runs the
real command `incidents replay --direct --verify`-less rebuild in a child process and reports
its wall time, events/s and peak RSS, next to raw ordered-consumer reading of the same log in
the same run (the ceiling for any replay).
"""

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench.project import history, publish, raw_consume
from services.natsserver import EmbeddedNatsServer


def main(events_wanted: int) -> None:
    console = Console()
    events = list(history(max(events_wanted // 10, 1), notes=5))
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedNatsServer(Path(tmp) / "nats", sync_always=False) as server,
    ):
        console.print(f"publishing {len(events):,} events...")
        asyncio.run(publish(server.url, events, window=1024))
        del events
        raw = asyncio.run(raw_consume(server.url, events_wanted // 10 * 10))
        env = {
            **os.environ,
            "INCIDENTS_NATS_URL": server.url,
            "INCIDENTS_DATA_DIR": str(Path(tmp) / "var"),
        }
        start = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "incidents"), "replay", "--direct"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mib = sum(p.stat().st_size for p in (Path(tmp) / "var").rglob("*")) / 2**20
    count = events_wanted // 10 * 10
    console.print(
        f"replay of {count:,} events: {wall:.1f} s, {count / wall:,.0f} events/s, "
        f"peak RSS {peak_mib:,.0f} MiB, read models {size_mib:,.0f} MiB; "
        f"raw ordered consume of the same log {raw:,.0f} msgs/s "
        f"(replay at {count / wall / raw:.2f} of it)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    main(parser.parse_args().events)
