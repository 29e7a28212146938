"""The write path: load the incident from the log, fold, decide, seal, append.

On a concurrency conflict the whole cycle runs again on the reloaded incident (bounded), so two
writers never both win a stale decision and the hash chain never forks. A command whose event id
is already in the incident's history is answered with the stored original, never appended again:
JetStream's dedup window covers quick retries, this covers any retry inside retention.
"""

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from msgspec import Struct

from events.chain import seal
from events.commands import AnyCommand, command_event_id, target_incident
from events.incident import Rejected, decide, fold
from events.store import Appended, ConcurrencyError, EventStore, Loaded

Clock = Callable[[], datetime]
MAX_ATTEMPTS: Final = 10


class ContentionError(Exception):
    """The incident kept changing under this writer; the caller may retry later."""


class Accepted(Struct, frozen=True):
    """The decision's events as stored; empty for a no-op."""

    events: list[Appended]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _already_stored(loaded: Loaded, event_id: str) -> list[Appended]:
    # A decision's later events carry "<event_id>/<n>" ids (see incident.decide).
    derived = event_id + "/"
    return [
        Appended(stored.event, stored.seq, duplicate=True)
        for stored in loaded.events
        if stored.event.event_id == event_id or stored.event.event_id.startswith(derived)
    ]


async def handle(
    store: EventStore,
    command: AnyCommand,
    clock: Clock = utc_now,
    attempts: int = MAX_ATTEMPTS,
) -> Accepted | Rejected:
    incident_id = target_incident(command)
    event_id = command_event_id(command)
    for attempt in range(attempts):
        loaded = await store.load(incident_id)
        original = _already_stored(loaded, event_id)
        if original:
            return Accepted(original)
        decision = decide(command, fold(stored.event for stored in loaded.events))
        if isinstance(decision, Rejected):
            return decision
        if not decision:
            return Accepted([])
        sealed = seal(decision, loaded.head_hash, clock())
        try:
            return Accepted(await store.append(sealed, loaded.last_seq))
        except ConcurrencyError:
            # Jitter spreads writers that collided so the next round has a winner.
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
    raise ContentionError(f"incident {incident_id} changed {attempts} times while deciding")
