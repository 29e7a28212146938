"""The write path: load the incident from the log, fold, decide, seal, append.

On a concurrency conflict the whole cycle runs again on the reloaded incident (bounded), so two
writers never both win a stale decision and the hash chain never forks. A command whose event id
is already in the incident's history is answered with the stored original, never appended again:
JetStream's dedup window covers quick retries, this covers any retry inside retention.

Within one process, writers of the same incident take turns (a lock per incident) and reuse the
incident as last seen (a bounded cache). Neither is needed for correctness, which rests on the
expected sequence; they keep other writers from wasting rounds and spare a reload per command.
"""

import asyncio
import random
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from msgspec import Struct

from events.chain import seal
from events.commands import AnyCommand, command_event_id, target_incident
from events.decisions import Rejected, decide
from events.incident import Incident, fold
from events.schema import AnyEvent, encode
from events.store import Appended, ConcurrencyError, EventStore, Loaded, Stored
from services.clock import Clock, utc_now
from services.errors import ErrorKind, ServiceError

MAX_ATTEMPTS: Final = 10
CACHED_INCIDENTS: Final = 1024


class ContentionError(ServiceError):
    """The incident kept changing under this writer; the caller may retry later."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, detail)


class Accepted(Struct, frozen=True):
    """The decision's events as stored; empty for a no-op."""

    events: list[Appended]


class _Seen(Struct, frozen=True, gc=False):
    loaded: Loaded
    state: Incident


def _already_stored(loaded: Loaded, event_id: str) -> list[Appended]:
    # A decision's later events carry "<event_id>/<n>" ids (see decisions.decide).
    derived = event_id + "/"
    return [
        Appended(stored.event, stored.seq, duplicate=True)
        for stored in loaded.events
        if stored.event.event_id == event_id or stored.event.event_id.startswith(derived)
    ]


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        clock: Clock = utc_now,
        attempts: int = MAX_ATTEMPTS,
        cache_size: int = CACHED_INCIDENTS,
    ) -> None:
        self.store = store
        self._clock = clock
        self._attempts = attempts
        self._cache_size = cache_size
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(self, command: AnyCommand) -> Accepted | Rejected:
        return await self.handle_all(target_incident(command), [command])

    async def handle_all(
        self, incident_id: str, commands: Sequence[AnyCommand]
    ) -> Accepted | Rejected:
        """Decide commands of one incident in order and append their events as one batch.

        Commands already stored (by event id) are answered with their originals; if any
        remaining command is rejected, nothing is appended.
        """
        if any(target_incident(command) != incident_id for command in commands):
            raise ValueError(f"every command must target incident {incident_id}")
        lock = self._locks.get(incident_id)
        if lock is None:
            lock = self._locks[incident_id] = asyncio.Lock()
        async with lock:
            return await self._handle(incident_id, commands)

    async def check_all(
        self, incident_id: str, commands: Sequence[AnyCommand]
    ) -> tuple[AnyCommand, Rejected] | None:
        """The first command `handle_all` would refuse and why, without appending."""
        seen = self._seen.get(incident_id)
        if seen is None:
            loaded = await self.store.load(incident_id)
            seen = _Seen(loaded, fold(stored.event for stored in loaded.events))
        state = seen.state
        for command in commands:
            if _already_stored(seen.loaded, command_event_id(command)):
                continue
            decision = decide(command, state)
            if isinstance(decision, Rejected):
                return command, decision
            state = fold(decision, state)
        return None

    async def _handle(
        self, incident_id: str, commands: Sequence[AnyCommand]
    ) -> Accepted | Rejected:
        seen = self._seen.get(incident_id)
        fresh = False
        for attempt in range(self._attempts):
            if seen is None:
                loaded = await self.store.load(incident_id)
                seen = _Seen(loaded, fold(stored.event for stored in loaded.events))
                fresh = True
            originals, decision = _decide_all(seen, commands)
            if isinstance(decision, Rejected) or not decision:
                # A refusal or no-op from a cached view must be confirmed against the log.
                if fresh or await self.store.incident_last_seq(incident_id) == seen.loaded.last_seq:
                    self._remember(incident_id, seen)
                    return decision if isinstance(decision, Rejected) else Accepted(originals)
                seen = None
                continue
            sealed = seal(decision, seen.loaded.head_hash, self._clock())
            try:
                appended = await self.store.append(sealed, seen.loaded.last_seq)
            except ConcurrencyError:
                self._seen.pop(incident_id, None)
                seen = None
                # Jitter spreads writers that collided so the next round has a winner.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            if any(a.duplicate for a in appended):
                self._seen.pop(incident_id, None)
            else:
                self._remember(incident_id, _extended(seen, appended))
            return Accepted(originals + appended)
        raise ContentionError(
            f"incident {incident_id} changed {self._attempts} times while deciding"
        )

    def _remember(self, incident_id: str, seen: _Seen) -> None:
        self._seen[incident_id] = seen
        self._seen.move_to_end(incident_id)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)


def _decide_all(
    seen: _Seen, commands: Sequence[AnyCommand]
) -> tuple[list[Appended], list[AnyEvent] | Rejected]:
    """Originals of commands already stored, and the events the others decide, in order."""
    originals: list[Appended] = []
    decided: list[AnyEvent] = []
    state = seen.state
    for command in commands:
        original = _already_stored(seen.loaded, command_event_id(command))
        if original:
            originals.extend(original)
            continue
        decision = decide(command, state)
        if isinstance(decision, Rejected):
            return originals, decision
        decided.extend(decision)
        state = fold(decision, state)
    return originals, decided


def _extended(seen: _Seen, appended: list[Appended]) -> _Seen:
    stored = [Stored(a.seq, a.event, encode(a.event)) for a in appended]
    loaded = Loaded([*seen.loaded.events, *stored], appended[-1].seq)
    return _Seen(loaded, fold((a.event for a in appended), seen.state))
