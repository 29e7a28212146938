"""The projector folding the log into a fresh DuckDB file, next to its raw ceilings measured on
the same log: a callback ordered consumer, a `next_msg` ordered consumer, a DuckDB appender."""

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import nats

from bench.common import raw_callback_consume, raw_next_msg_consume
from bench.history import LOG_SUBJECTS, history
from bench.results import Row, row
from events.schema import encode, type_name
from events.store import EventStore
from projections.database import open_database
from projections.projector import Projector

RAW_TABLE = """CREATE TABLE raw_events (
    seq BIGINT, event_id VARCHAR, incident_id VARCHAR, type VARCHAR,
    occurred_at TIMESTAMPTZ, actor VARCHAR, source VARCHAR, body JSON)"""


async def raw_consumes(url: str, count: int) -> tuple[float, float]:
    """Callback and `next_msg` ordered consumers over the log's first `count` records."""
    nc = await nats.connect(url)
    try:
        return (
            await raw_callback_consume(nc, LOG_SUBJECTS, count),
            await raw_next_msg_consume(nc, LOG_SUBJECTS, count),
        )
    finally:
        await nc.close()


def raw_appender(path: Path, count: int) -> float:
    """Rows/s of a DuckDB appender filling an unindexed table with the same events' rows."""
    rows = [
        (
            seq,
            e.event_id,
            e.incident_id,
            type_name(e),
            e.occurred_at,
            e.actor,
            e.source.value,
            encode(e).decode(),
        )
        for seq, e in enumerate(history(count, notes=5), start=1)
    ]
    con = duckdb.connect(str(path))
    try:
        con.execute(RAW_TABLE)
        start = time.perf_counter()
        appender = con.appender("raw_events")
        appender.append_rows(rows)
        appender.flush()
        return count / (time.perf_counter() - start)
    finally:
        con.close()


async def projector_rate(url: str, path: Path, count: int, done: Callable[[int], None]) -> float:
    """Events/s of `Projector.run` from an empty file until its checkpoint reaches `count`."""
    nc = await nats.connect(url)
    con = open_database(path)
    projector = Projector(con, EventStore(nc))
    start = time.perf_counter()
    task = asyncio.create_task(projector.run())
    try:
        while projector.checkpoint < count:
            with contextlib.suppress(TimeoutError):
                await projector.wait(count, timeout=0.5)
            done(projector.checkpoint)
            if task.done():
                task.result()  # its failure, raised here
        return projector.checkpoint / (time.perf_counter() - start)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        con.close()
        await nc.close()


def projector_row(
    count: int, projected: float, callback: float, next_msg: float, appender: float
) -> Row:
    return row(
        "projector",
        f"projector, {count:,} events (NATS -> decode -> evolve -> DuckDB, checkpointed)",
        projected,
        "events/s",
        f"{projected:,.0f} events/s",
        [
            ("raw callback ordered consume", callback, "msgs/s"),
            ("raw next_msg ordered consume", next_msg, "msgs/s"),
            ("raw DuckDB appender insert", appender, "rows/s"),
        ],
    )
