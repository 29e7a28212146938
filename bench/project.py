"""Projector throughput against raw JetStream consume and raw DuckDB insert, and MTTR latency.

    uv run python -m bench.project [--events N] [--incidents-for-mttr M]

In one run: publishes N sealed events (incidents of ~10 events) to a fresh nats-server, then
measures (1) raw ordered-consumer reading of the N messages, no decoding; (2) raw DuckDB
appender insert of N event rows; (3) the projector folding the whole log from NATS into a fresh
DuckDB file (read, decode, evolve, write, checkpoint). Then it builds a read model of M
incidents (default 100k, ~6 events each, straight through `Projector.apply`) and times the
MTTR query (`GET /v1/metrics/mttr?group_by=severity`), median of 5.
"""

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console
from rich.table import Table

from events.chain import seal
from events.records import Stored
from events.schema import (
    AnyEvent,
    IncidentAcknowledged,
    IncidentDeclared,
    IncidentNoteAdded,
    IncidentResolved,
    MitigationAction,
    MitigationCompleted,
    MitigationStarted,
    Outcome,
    Severity,
    Source,
    encode,
    type_name,
)
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from events.subjects import event_subject
from projections import metrics
from projections.database import open_database
from projections.projector import Projector
from projections.rows import event_row as _event_row
from projections.schema import create
from services.natsserver import EmbeddedNatsServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Origin(TypedDict):
    """The envelope fields every event of one incident shares."""

    incident_id: str
    actor: str
    source: Source


def incident_events(n: int, rng: random.Random, notes: int) -> list[AnyEvent]:
    incident_id = f"INC-B{n:08d}"
    opened = T0 + timedelta(minutes=rng.randrange(0, 525_600))
    env: Origin = {"incident_id": incident_id, "actor": "bench", "source": Source.API}

    def at(minutes: float) -> datetime:
        return opened + timedelta(minutes=minutes)

    events: list[AnyEvent] = [
        IncidentDeclared(
            event_id=f"{incident_id}-d",
            occurred_at=opened,
            title="bench",
            severity=rng.choice(list(Severity)),
            services=(rng.choice(["api", "db", "web"]),),
            **env,
        ),
        IncidentAcknowledged(
            event_id=f"{incident_id}-a", occurred_at=at(rng.uniform(1, 30)), **env
        ),
        MitigationStarted(
            event_id=f"{incident_id}-ms",
            occurred_at=at(31),
            mitigation_id="m1",
            action=MitigationAction.ROLLBACK,
            **env,
        ),
        MitigationCompleted(
            event_id=f"{incident_id}-mc",
            occurred_at=at(rng.uniform(32, 90)),
            mitigation_id="m1",
            outcome=Outcome.SUCCEEDED,
            **env,
        ),
    ]
    events += [
        IncidentNoteAdded(
            event_id=f"{incident_id}-n{k}", occurred_at=at(40 + k), text="note", **env
        )
        for k in range(notes)
    ]
    events.append(
        IncidentResolved(event_id=f"{incident_id}-r", occurred_at=at(rng.uniform(91, 600)), **env)
    )
    return seal(events, "", opened + timedelta(hours=12))


def history(incidents: int, notes: int, seed: int = 7) -> Iterator[AnyEvent]:
    rng = random.Random(seed)
    for n in range(incidents):
        yield from incident_events(n, rng, notes)


async def publish(url: str, events: list[AnyEvent], window: int = 512) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(nc, StreamSettings())
    for base in range(0, len(events), window):
        await asyncio.gather(
            *(
                js.publish(
                    event_subject(e.incident_id, type_name(e)), encode(e), stream="INCIDENTS"
                )
                for e in events[base : base + window]
            )
        )
    await nc.close()


async def raw_consume(url: str, count: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    start = time.perf_counter()
    sub = await js.subscribe(
        "incidents.>",
        ordered_consumer=True,
        stream="INCIDENTS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        pending_msgs_limit=200_000,
    )
    for _ in range(count):
        await sub.next_msg(timeout=10)
    rate = count / (time.perf_counter() - start)
    await sub.unsubscribe()
    await nc.close()
    return rate


def raw_insert(path: Path, events: list[AnyEvent]) -> float:
    rows = [_event_row(Stored(seq, e, encode(e))) for seq, e in enumerate(events, start=1)]
    con = open_database(path)
    create(con)
    start = time.perf_counter()
    appender = con.appender("events")
    appender.append_rows(rows)
    appender.flush()
    rate = len(rows) / (time.perf_counter() - start)
    con.close()
    return rate


async def projector_rate(url: str, path: Path) -> float:
    nc = await nats.connect(url)
    store = EventStore(nc)
    con = open_database(path)
    projector = Projector(con, store)
    target = await store.last_seq()
    start = time.perf_counter()
    task = asyncio.create_task(projector.run())
    await projector.wait(target, timeout=3600)
    rate = target / (time.perf_counter() - start)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    con.close()
    await nc.close()
    return rate


def mttr_latency(path: Path, incidents: int) -> tuple[float, int]:
    con = open_database(path)
    projector = Projector(con, None)  # apply() needs no log
    batch: list[Stored] = []
    seq = 0
    for event in history(incidents, notes=1, seed=11):
        seq += 1
        batch.append(Stored(seq, event, encode(event)))
        if len(batch) == 20_000:
            projector.apply(batch, seq)
            batch = []
    projector.apply(batch, seq)
    timings = []
    for _ in range(5):
        cur = con.cursor()
        start = time.perf_counter()
        metrics.mttx(cur, "severity", None, None)
        timings.append(time.perf_counter() - start)
        cur.close()
    con.close()
    return statistics.median(timings), seq


def main(events_wanted: int, mttr_incidents: int) -> None:
    console = Console()
    events = list(history(max(events_wanted // 10, 1), notes=5))
    with tempfile.TemporaryDirectory() as tmp:
        with EmbeddedNatsServer(Path(tmp) / "nats", sync_always=False) as server:
            console.print(f"publishing {len(events):,} events...")
            asyncio.run(publish(server.url, events))
            consume = asyncio.run(raw_consume(server.url, len(events)))
            insert = raw_insert(Path(tmp) / "raw.duckdb", events)
            project = asyncio.run(projector_rate(server.url, Path(tmp) / "proj.duckdb"))
        console.print(f"building a read model of {mttr_incidents:,} incidents...")
        latency, rows = mttr_latency(Path(tmp) / "mttr.duckdb", mttr_incidents)
    table = Table(title=f"projection of {len(events):,} events (events/s)")
    for column in ("what", "events/s", "ratio to projector"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for what, rate in [
        ("raw JetStream ordered consume (no decode)", consume),
        ("raw DuckDB appender insert", insert),
        ("projector: NATS -> decode -> evolve -> DuckDB", project),
    ]:
        table.add_row(what, f"{rate:,.0f}", f"{rate / project:.2f}")
    console.print(table)
    console.print(
        f"MTTR by severity over {mttr_incidents:,} incidents ({rows:,} events): "
        f"{latency * 1000:.0f} ms (median of 5)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--incidents-for-mttr", type=int, default=100_000)
    args = parser.parse_args()
    main(args.events, args.incidents_for_mttr)
