"""Timing helpers and the raw baselines every figure is divided by: plain nats-py publishes and
reads, measured on the same nats-server in the same run."""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

PAYLOAD = b"x" * 256  # about an event's size
RAW_STREAM = "RAW"


async def rate(count: int, run: Callable[[], Awaitable[object]]) -> float:
    """Items per second for `run`, which handles `count` items."""
    start = time.perf_counter()
    await run()
    return count / (time.perf_counter() - start)


async def windows(count: int, window: int, one: Callable[[int], Awaitable[object]]) -> None:
    """Run `one(i)` for i < count, `window` at a time (pipelined, bounded)."""
    for base in range(0, count, window):
        await asyncio.gather(*(one(i) for i in range(base, min(base + window, count))))


def p50_p95_ms(samples: Sequence[float]) -> tuple[float, float]:
    """Median and 95th percentile (inclusive method) of durations in seconds, in ms."""
    if len(samples) < 2:
        return samples[0] * 1000, samples[0] * 1000
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples) * 1000, cuts[18] * 1000


class RawPublishes(msgspec.Struct, frozen=True):
    """Plain js.publish of PAYLOAD to a throw-away stream (msgs/s): awaited one by one, and
    pipelined in windows of 32 (HTTP's requests in flight) and of 256 (pipelined appends)."""

    sequential: float
    window_32: float
    window_256: float


async def raw_publishes(js: JetStreamContext, sequential: int, pipelined: int) -> RawPublishes:
    await js.add_stream(name=RAW_STREAM, subjects=["raw.>"])

    async def one_by_one() -> None:
        for i in range(sequential):
            await js.publish(f"raw.{i % 100}", PAYLOAD)

    async def pipelined_in(window: int) -> float:
        return await rate(
            pipelined,
            lambda: windows(pipelined, window, lambda i: js.publish(f"raw.{i % 100}", PAYLOAD)),
        )

    return RawPublishes(
        sequential=await rate(sequential, one_by_one),
        window_32=await pipelined_in(32),
        window_256=await pipelined_in(256),
    )


def _from_start() -> ConsumerConfig:
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


async def raw_callback_consume(nc: NATS, subject: str, count: int) -> float:
    """Ordered push consumer with a callback counting messages, no decoding (msgs/s): the
    ceiling for anything that reads the log (DESIGN 12)."""
    done = asyncio.Event()
    seen = 0

    async def counted(_: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    start = time.perf_counter()
    sub = await nc.jetstream().subscribe(
        subject,
        cb=counted,
        ordered_consumer=True,
        config=_from_start(),
    )
    await asyncio.wait_for(done.wait(), timeout=3600)
    measured = count / (time.perf_counter() - start)
    await sub.unsubscribe()
    return measured


async def raw_next_msg_consume(nc: NATS, subject: str, count: int) -> float:
    """Ordered push consumer read with `next_msg`, one message at a time, no decoding (msgs/s)."""
    start = time.perf_counter()
    sub = await nc.jetstream().subscribe(
        subject,
        ordered_consumer=True,
        config=_from_start(),
        pending_msgs_limit=200_000,
    )
    for _ in range(count):
        await sub.next_msg(timeout=10)
    measured = count / (time.perf_counter() - start)
    await sub.unsubscribe()
    return measured
