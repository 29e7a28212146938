"""The write path in this process: `CommandHandler.handle` pipelined (notes on many incidents at
once, client ids: load, decide, seal, claim, append), against raw pipelined js.publish."""

from datetime import UTC, datetime

import nats

from bench.common import rate, windows
from bench.results import Row, row
from events.commands import AddNote, Declare
from events.schema import Severity, Source
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from events.subjects import new_incident_id
from services.write.handler import Accepted, CommandHandler

NOW = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = 256


async def handle_rate(url: str, count: int) -> float:
    nc = await nats.connect(url)
    try:
        await ensure_stream(nc, StreamSettings())
        handler = CommandHandler(EventStore(nc))
        ids = [new_incident_id() for _ in range(WINDOW)]

        async def declare(i: int) -> None:
            answer = await handler.handle(
                Declare(
                    incident_id=ids[i],
                    event_id=f"decl-{ids[i]}",
                    occurred_at=NOW,
                    actor="bench@example.com",
                    source=Source.API,
                    title="bench",
                    severity=Severity.P2,
                )
            )
            if not isinstance(answer, Accepted):
                raise RuntimeError(f"declare: {answer}")

        await windows(WINDOW, WINDOW, declare)

        async def note(i: int) -> None:
            incident_id = ids[i % WINDOW]
            answer = await handler.handle(
                AddNote(
                    incident_id=incident_id,
                    event_id=f"{incident_id}-{i}",
                    occurred_at=NOW,
                    actor="bench@example.com",
                    source=Source.API,
                    text=f"observation {i}: error ratio still above threshold",
                )
            )
            if not isinstance(answer, Accepted):
                raise RuntimeError(f"note: {answer}")

        return await rate(count, lambda: windows(count, WINDOW, note))
    finally:
        await nc.close()


def append_row(sync: str, count: int, handled: float, raw_pipelined: float) -> Row:
    return row(
        "append_pipelined",
        f"append pipelined, `CommandHandler.handle`, {count:,} notes, {WINDOW} incidents at "
        "once (client ids)",
        handled,
        "events/s",
        f"{handled:,.0f} events/s",
        [(f"raw js.publish, windows of {WINDOW}", raw_pipelined, "msgs/s")],
        sync=sync,
    )
