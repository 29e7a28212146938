"""Stopping asyncio tasks that read from NATS, for sure.

One `task.cancel()` is not enough on Python 3.11: `asyncio.wait_for`, which nats-py's
`next_msg` and requests wait in, returns the result instead of raising when a cancel lands in
the same loop iteration as the message it was waiting for (CPython gh-86296, fixed in 3.12).
The task then goes on as if never told to stop. Under a steady stream of messages that race is
common: it hung a replay's hand-over in CI.
"""

import asyncio
import contextlib
from typing import Any, TypeVar

T = TypeVar("T")


async def stop(task: "asyncio.Task[Any]", every_s: float = 0.2) -> None:
    """Cancel `task` until it has ended; an exception it ended with is raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every_s)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def finish(work: "asyncio.Future[T]") -> T:
    """Wait for `work` to end however often the waiter is cancelled meanwhile, then re-raise
    the first cancel: for work that must not be left half-way (a transaction in a thread)."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        work.result()  # its own failure, if any, says more than the cancel
        raise
