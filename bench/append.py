"""Append throughput of the event log against raw nats-py publishes on the same server.

    uv run python -m bench.append [--events N] [--window W] [--no-sync]

Starts its own nats-server (as `incidents serve` does: file store, `sync_interval: always`)
in a temporary directory and reports events/s per mode with the ratio to the raw baseline of
the same mode (sequential awaited, or pipelined in windows of W), measured in this run.
"""

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client as NATS
from rich.console import Console
from rich.table import Table

from bench.common import rate, raw_publish_rates, sequential_count, windows
from events.chain import seal
from events.commands import AddNote, Declare
from events.schema import IncidentNoteAdded, Severity, Source
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from events.subjects import new_incident_id, service_event_id
from services.bootstrap import connect
from services.natsserver import EmbeddedNatsServer
from services.write.handler import Accepted, CommandHandler

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _note(incident_id: str, n: int, service_id: bool = False) -> AddNote:
    # A client's id is claimed before its event is appended (one more publish); an id the
    # service made itself (`~...`, what people's commands get) is not.
    return AddNote(
        incident_id=incident_id,
        event_id=service_event_id() if service_id else f"{incident_id}-{n}",
        occurred_at=NOW,
        actor="bench@example.com",
        source=Source.API,
        text=f"observation {n}: error ratio still above threshold",
    )


async def _declared(handler: CommandHandler, incidents: int) -> list[str]:
    ids = [new_incident_id() for _ in range(incidents)]
    for incident_id in ids:
        declare = Declare(
            incident_id=incident_id,
            event_id=f"decl-{incident_id}",
            occurred_at=NOW,
            actor="bench@example.com",
            source=Source.API,
            title="bench",
            severity=Severity.P2,
        )
        assert isinstance(await handler.handle(declare), Accepted)
    return ids


async def measure(nc: NATS, events: int, window: int) -> dict[str, float]:
    rates = await raw_publish_rates(nc.jetstream(), events, window)
    await ensure_stream(nc, StreamSettings())
    store = EventStore(nc)
    sequential = sequential_count(events)

    incident_id = new_incident_id()
    await CommandHandler(store).handle(
        Declare(
            incident_id=incident_id,
            event_id=f"decl-{incident_id}",
            occurred_at=NOW,
            actor="bench",
            source=Source.API,
            title="bench",
            severity=Severity.P3,
        )
    )

    async def store_seq() -> None:
        loaded = await store.load(incident_id)
        head, last = loaded.head_hash, loaded.last_seq
        for i in range(sequential):
            note = IncidentNoteAdded(
                event_id=f"s-{i}",
                incident_id=incident_id,
                occurred_at=NOW,
                actor="bench",
                source=Source.API,
                text=f"note {i}",
            )
            [sealed] = seal([note], head, NOW)
            [appended] = await store.append([sealed], last)
            head, last = sealed.hash, appended.seq

    rates["EventStore.append, sequential"] = await rate(sequential, store_seq)

    handler = CommandHandler(store)
    ids = await _declared(handler, 50)

    async def handle_seq() -> None:
        for i in range(sequential):
            await handler.handle(_note(ids[i % len(ids)], i))

    rates["CommandHandler.handle, sequential"] = await rate(sequential, handle_seq)

    async def handle_own_ids() -> None:
        for i in range(sequential):
            await handler.handle(_note(ids[i % len(ids)], i, service_id=True))

    rates["CommandHandler.handle, sequential, service ids"] = await rate(sequential, handle_own_ids)

    cold = CommandHandler(store, cache_size=0)

    async def handle_cold() -> None:
        for i in range(sequential // 4):
            await cold.handle(_note(ids[i % len(ids)], 10**6 + i))

    rates["CommandHandler.handle, sequential, no cache"] = await rate(sequential // 4, handle_cold)

    many = await _declared(handler, window)
    rates["CommandHandler.handle, pipelined"] = await rate(
        events,
        lambda: windows(
            events, window, lambda i: handler.handle(_note(many[i % window], 2 * 10**6 + i))
        ),
    )
    return rates


def report(rates: dict[str, float], console: Console) -> None:
    table = Table(title="append throughput (events/s; ratio to raw js.publish, same mode)")
    table.add_column("mode")
    table.add_column("events/s", justify="right")
    table.add_column("ratio", justify="right")
    for mode, measured in rates.items():
        baseline = rates[
            "raw js.publish, " + ("pipelined" if "pipelined" in mode else "sequential")
        ]
        table.add_row(mode, f"{measured:,.0f}", f"{measured / baseline:.2f}")
    console.print(table)


async def main(events: int, window: int, sync_always: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNatsServer(Path(tmp) / "nats", sync_always=sync_always)
        with server:
            nc = await connect(server.url, name="bench")
            try:
                rates = await measure(nc, events, window)
            finally:
                await nc.close()
    console = Console()
    console.print(f"nats-server sync_interval: {'always' if sync_always else 'default'}")
    report(rates, console)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--no-sync", action="store_true", help="server default fsync policy")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.window, not args.no_sync))
