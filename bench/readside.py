"""The read side over one large log: `incidents serve` holding it projected (RSS), the projector
against its raw ceilings, and `incidents replay --direct` (wall, rate, peak RSS)."""

import asyncio
from pathlib import Path

import nats

from bench.children import ServeChild, replay_direct
from bench.common import raw_callback_consume
from bench.history import LOG_SUBJECTS, history, publish
from bench.profiling import profiled
from bench.progress import Steps
from bench.project import projector_rate, projector_row, raw_appender, raw_consumes
from bench.results import Row, row
from bench.sizes import Sizes
from events.stream import StreamSettings
from services.natsserver import EmbeddedNatsServer

STEPS = 5


def read_side(tmp: Path, sizes: Sizes, steps: Steps, profile: Path | None) -> list[Row]:
    # Reads do not depend on fsync; the log is written fast with the server's default policy.
    with EmbeddedNatsServer(tmp / "nats-read", sync_always=False) as server:
        with steps.step(f"serve RSS: publish {sizes.log_events:,} events, wait until projected"):
            serve = asyncio.run(_serve_rss(server.url, tmp / "serve-rss", sizes.log_events, steps))
        count = sizes.projector_events
        with steps.step(f"raw consumers and appender over {count:,} events"):
            callback, next_msg = asyncio.run(raw_consumes(server.url, count))
            appender = raw_appender(tmp / "raw.duckdb", count)
        with (
            steps.step(f"projector over {count:,} events"),
            steps.counting("projected", count) as done,
            profiled(profile, "projector"),
        ):
            projected = asyncio.run(projector_rate(server.url, tmp / "proj.duckdb", count, done))
        project = projector_row(count, projected, callback, next_msg, appender)
        with steps.step(f"raw callback consume of all {sizes.log_events:,} events"):
            whole = (
                callback
                if sizes.log_events == count
                else asyncio.run(_callback_over_all(server.url, sizes.log_events))
            )
        with steps.step(f"incidents replay --direct of {sizes.log_events:,} events"):
            wall, peak = replay_direct(server.url, tmp / "replay")
    return [project, _replay_row(sizes.log_events, wall, peak, whole), serve]


async def _callback_over_all(url: str, count: int) -> float:
    nc = await nats.connect(url)
    try:
        return await raw_callback_consume(nc, LOG_SUBJECTS, count)
    finally:
        await nc.close()


async def _serve_rss(url: str, data_dir: Path, count: int, steps: Steps) -> Row:
    async with ServeChild(url, data_dir) as serve:
        idle, _ = serve.rss_mb()
        with steps.counting("published", count) as done:
            await publish(url, history(count, notes=5), done)
        nc = await nats.connect(url)
        try:
            last = (await nc.jetstream().stream_info(StreamSettings().name)).state.last_seq
        finally:
            await nc.close()
        caught_up = await serve.projected(last)
        rss, peak = serve.rss_mb()
    return row(
        "serve_rss",
        f"`incidents serve` RSS with {count:,} events projected",
        rss,
        "MB",
        f"{rss:,.0f} MB (peak {peak:,.0f} MB; caught up {caught_up:,.1f} s after the last publish)",
        [("the same serve on an empty log", idle, "MB")],
        details={"peak_rss_mb": peak, "catch_up_s": caught_up},
    )


def _replay_row(count: int, wall_s: float, peak_mb: float, callback: float) -> Row:
    return row(
        "replay",
        f"replay of {count:,} events (`incidents replay --direct` in a child; the wall time "
        "includes its start-up)",
        count / wall_s,
        "events/s",
        f"{wall_s:,.1f} s, {count / wall_s:,.0f} events/s, peak RSS {peak_mb:,.0f} MB",
        [("raw callback ordered consume of the same log", callback, "msgs/s")],
        details={"wall_s": wall_s, "peak_rss_mb": peak_mb},
    )
