"""Timing helpers and the raw baseline shared by the benchmarks."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

PAYLOAD = b"x" * 256  # about an event's size


async def rate(count: int, run: Callable[[], Awaitable[None]]) -> float:
    """Items per second for `run`, which handles `count` items."""
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


async def windows(count: int, window: int, one: Callable[[int], Awaitable[object]]) -> None:
    """Run `one(i)` for i < count, `window` at a time (pipelined, bounded)."""
    for base in range(0, count, window):
        await asyncio.gather(*(one(i) for i in range(base, min(base + window, count))))


def sequential_count(events: int) -> int:
    """How many items the one-at-a-time modes handle: a fifth, so a run stays short."""
    return max(events // 5, 200)


async def raw_publish_rates(js: JetStreamContext, events: int, window: int) -> dict[str, float]:
    """The baseline: plain js.publish of PAYLOAD to a throw-away stream, awaited one by one and
    pipelined `window` at a time."""
    await js.add_stream(name="RAW", subjects=["raw.>"])
    sequential = sequential_count(events)

    async def raw_seq() -> None:
        for i in range(sequential):
            await js.publish(f"raw.{i % 100}", PAYLOAD)

    return {
        "raw js.publish, sequential": await rate(sequential, raw_seq),
        "raw js.publish, pipelined": await rate(
            events,
            lambda: windows(events, window, lambda i: js.publish(f"raw.{i % 100}", PAYLOAD)),
        ),
    }
