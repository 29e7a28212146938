"""Stopping a task that waits in asyncio.wait_for, as nats-py's next_msg does."""

import asyncio
import sys

import pytest

from projections.tasks import finish, stop


async def _consume(queue: "asyncio.Queue[int]", seen: list[int]) -> None:
    while True:
        seen.append(await asyncio.wait_for(queue.get(), timeout=5))


async def _cancel_as_a_message_arrives(queue: "asyncio.Queue[int]") -> None:
    await asyncio.sleep(0.01)  # the consumer now waits in wait_for
    queue.put_nowait(1)  # wakes the inner get in the next loop iteration...


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython gh-86296 is fixed in 3.12")
async def test_a_single_cancel_is_lost_when_the_message_arrives_with_it() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    seen: list[int] = []
    task = asyncio.create_task(_consume(queue, seen))
    await _cancel_as_a_message_arrives(queue)
    task.cancel()  # ...in the same iteration as this cancel
    await asyncio.sleep(0.05)
    try:
        assert not task.done() and seen == [1]  # the cancel was swallowed: the task goes on
    finally:
        await stop(task)


async def test_stop_ends_the_task_even_when_the_first_cancel_is_lost() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    seen: list[int] = []
    task = asyncio.create_task(_consume(queue, seen))
    await _cancel_as_a_message_arrives(queue)
    await asyncio.wait_for(stop(task), timeout=5)
    assert task.cancelled()


async def test_stop_raises_what_the_task_failed_with() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await stop(task)


async def test_finish_lets_the_work_end_however_often_the_waiter_is_cancelled() -> None:
    release = asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        await release.wait()
        finished.append(True)

    job = asyncio.ensure_future(work())
    waiter = asyncio.create_task(finish(job))
    await asyncio.sleep(0.01)
    for _ in range(3):
        waiter.cancel()
        await asyncio.sleep(0.01)
    assert not waiter.done()  # still waiting for the work, not abandoning it
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert finished == [True]
