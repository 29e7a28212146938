"""Synthetic incident histories (sealed, deterministic) and publishing them straight to the log,
as a producer that is not the service would: the read-side benches' input."""

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TypedDict

import nats
from nats.js import JetStreamContext

from events.chain import seal
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
from events.stream import StreamSettings, ensure_stream
from events.subjects import event_subject

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERVICES = ("api", "db", "web", "checkout", "search")
LOG_SUBJECTS = "incidents.>"  # every event's subject (events.subjects.event_subject)


class Origin(TypedDict):
    """The envelope fields every event of one incident shares."""

    incident_id: str
    actor: str
    source: Source


def incident_events(n: int, rng: random.Random, notes: int) -> list[AnyEvent]:
    """One incident of `notes` + 5 events: declared, acknowledged, a mitigation started and
    completed, the notes, resolved; spread over a year so MTTR groups by month too."""
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
            services=(rng.choice(SERVICES),),
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


def history(events: int, notes: int, seed: int = 7) -> Iterator[AnyEvent]:
    """`events` events (the last incident cut short if need be) of incidents of `notes` + 5."""
    rng = random.Random(seed)

    def incidents() -> Iterator[AnyEvent]:
        n = 0
        while True:
            yield from incident_events(n, rng, notes)
            n += 1

    return islice(incidents(), events)


async def publish(
    url: str,
    events: Iterable[AnyEvent],
    done: Callable[[int], None] = lambda _: None,
    window: int = 1024,
) -> int:
    """Publish `events` pipelined into the log's stream, generating them as it goes (a million
    events never sit in memory at once); `done(n)` after each window. Returns the count."""
    nc = await nats.connect(url)
    try:
        await ensure_stream(nc, StreamSettings())
        js = nc.jetstream()
        count = 0
        it = iter(events)
        while chunk := list(islice(it, window)):
            await asyncio.gather(*(_publish(js, event) for event in chunk))
            count += len(chunk)
            done(count)
        return count
    finally:
        await nc.close()


async def _publish(js: JetStreamContext, event: AnyEvent) -> object:
    return await js.publish(event_subject(event.incident_id, type_name(event)), encode(event))
