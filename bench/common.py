"""Timing helpers shared by the benchmarks."""

import asyncio
import time
from collections.abc import Awaitable, Callable


async def rate(count: int, run: Callable[[], Awaitable[None]]) -> float:
    """Items per second for `run`, which handles `count` items."""
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


async def windows(count: int, window: int, one: Callable[[int], Awaitable[object]]) -> None:
    """Run `one(i)` for i < count, `window` at a time (pipelined, bounded)."""
    for base in range(0, count, window):
        await asyncio.gather(*(one(i) for i in range(base, min(base + window, count))))
