"""The write path: load incidents from the log, fold, decide, seal, append.

On a concurrency conflict the whole cycle runs again on the reloaded incidents (bounded), so two
writers never both win a stale decision and the hash chain never forks. A command whose event id
is already in the incident's history is answered with the stored original, never appended again:
JetStream's dedup window covers quick retries, this covers any retry inside retention. Commands
for several incidents (a producer's batch) are decided together and appended as one atomic
batch: all stored, or none.

Within one process, writers of the same incident take turns (a lock per incident) and reuse the
incident as last seen (a bounded cache). Neither is needed for correctness, which rests on the
expected sequence: an append decided on a stale view fails and is decided again, and a refusal
or a no-op decided on a cached view is confirmed against the log before it is answered.
Writers of different incidents append together (`commits.GroupCommit`).

A caller whose commands depend on the incident (an alert's event id names the occurrence it
belongs to) passes a builder instead (`handle_built`): it is called on each view the decision
is made on, so a retry after a conflict builds its commands again from the reloaded incident.
"""

import asyncio
import random
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final, Protocol

from msgspec import Struct

from events.chain import seal
from events.commands import AnyCommand, command_event_id, target_incident
from events.crash_points import reached as crash_point
from events.decisions import Rejected, decide
from events.incident import INITIAL, fold
from events.records import Loaded, Stored
from events.schema import AlertFired, AlertResolved, AnyEvent, IncidentClosed, IncidentResolved
from events.store import Appended, ConcurrencyError, EventStore
from services.clock import Clock, utc_now
from services.errors import ErrorKind, ServiceError
from services.write.commits import GroupCommit

MAX_ATTEMPTS: Final = 10
CACHED_INCIDENTS: Final = 1024


class ContentionError(ServiceError):
    """The incident kept changing under this writer; the caller may retry later."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, detail)


class Accepted(Struct, frozen=True):
    """The decision's events as stored; empty for a no-op."""

    events: list[Appended]


class Refused(Struct, frozen=True):
    """Which command of a batch the lifecycle refused, and why; nothing was appended."""

    command: AnyCommand
    rejection: Rejected


class IncidentView(Protocol):
    """What a command builder reads of the incident its commands are decided on."""

    @property
    def declared(self) -> bool: ...

    @property
    def ended(self) -> bool:
        """Resolved or closed at some point of its history (true for good once true)."""
        ...

    def alert_seqs(self, fingerprint: str) -> tuple[int, int]:
        """Sequences of the alert's last firing and last resolve (0: none)."""
        ...


# Commands from the incident as seen; None declines (nothing is decided or appended). A builder
# may decline only on what stays true once true (`ended`): a cached view is not confirmed first.
Builder = Callable[[IncidentView], Sequence[AnyCommand] | None]


class _Seen:
    """An incident as this writer last saw it: its events indexed by id, its folded state, and
    the last firing and resolve of each alert. Extended in place after an append, so a write
    into an incident of 50,000 events costs what a write into a small one does."""

    def __init__(self, loaded: Loaded) -> None:
        self.last_seq = loaded.last_seq
        self.head_hash = loaded.head_hash
        self.by_id: dict[str, Stored] = {}
        self.alerts: dict[str, tuple[int, int]] = {}
        self.state = INITIAL
        self.ended = False
        self._add(loaded.events)

    @property
    def declared(self) -> bool:
        return self.state.declared

    def alert_seqs(self, fingerprint: str) -> tuple[int, int]:
        return self.alerts.get(fingerprint, (0, 0))

    def extend(self, appended: Sequence[Appended]) -> None:
        self._add([Stored(a.seq, a.event, b"") for a in appended])
        self.last_seq = appended[-1].seq
        self.head_hash = appended[-1].event.hash

    def _add(self, events: Sequence[Stored]) -> None:
        for stored in events:
            event = stored.event
            self.by_id[event.event_id] = stored
            self.ended = self.ended or isinstance(event, IncidentResolved | IncidentClosed)
            if isinstance(event, AlertFired | AlertResolved):
                fired, resolved = self.alerts.get(event.fingerprint, (0, 0))
                firing = isinstance(event, AlertFired)
                self.alerts[event.fingerprint] = (
                    stored.seq if firing else fired,
                    resolved if firing else stored.seq,
                )
        self.state = fold((stored.event for stored in events), self.state)


def already_stored(seen: _Seen, event_id: str) -> list[Appended]:
    """The events a command with `event_id` stored, if it was handled before.

    A decision's later events carry exactly the ids `<event_id>/1`, `/2`... and name the first
    as their cause (see `decisions.decide`): they are found with it, never by a shared prefix.
    """
    first = seen.by_id.get(event_id)
    if first is None:
        return []
    found = [first]
    while (derived := seen.by_id.get(f"{event_id}/{len(found)}")) is not None:
        found.append(derived)
    return [Appended(stored.event, stored.seq, duplicate=True) for stored in found]


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        clock: Clock = utc_now,
        attempts: int = MAX_ATTEMPTS,
        cache_size: int = CACHED_INCIDENTS,
    ) -> None:
        self.store = store
        self.clock = clock
        self._attempts = attempts
        self._cache_size = cache_size
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._commits = GroupCommit(store)

    async def handle(self, command: AnyCommand) -> Accepted | Rejected:
        return await self.handle_all(target_incident(command), [command])

    async def handle_all(
        self, incident_id: str, commands: Sequence[AnyCommand]
    ) -> Accepted | Rejected:
        """Decide commands of one incident in order and append their events as one batch."""
        if any(target_incident(command) != incident_id for command in commands):
            raise ValueError(f"every command must target incident {incident_id}")
        result = await self.handle_batch({incident_id: commands})
        return result.rejection if isinstance(result, Refused) else result

    async def handle_batch(self, groups: Mapping[str, Sequence[AnyCommand]]) -> Accepted | Refused:
        """Decide each incident's commands in order; append every event as one atomic batch.

        Commands already stored (by event id) are answered with their originals; if any
        remaining command is refused, nothing is appended.
        """
        async with self._turn(sorted(groups)):
            result = await self._handle({i: _fixed(commands) for i, commands in groups.items()})
        assert result is not None  # fixed commands are never declined
        return result

    async def handle_built(self, incident_id: str, build: Builder) -> Accepted | Rejected | None:
        """Decide the commands `build` makes from the incident as the decision sees it, and
        append their events as one batch; None when the builder declined."""
        async with self._turn([incident_id]):
            result = await self._handle({incident_id: build})
        return result.rejection if isinstance(result, Refused) else result

    async def alert_seqs(self, incident_id: str, fingerprint: str) -> tuple[int, int]:
        """Sequences of the alert's last firing and last resolve in the incident as the log
        holds it now (0: none), which tell one occurrence of the alert from the next."""
        async with self._turn([incident_id]):
            seen = self._seen.get(incident_id)
            if seen is None or not await self._current(incident_id, seen):
                seen = await self._load(incident_id)
                self._remember(incident_id, seen)
            return seen.alerts.get(fingerprint, (0, 0))

    @asynccontextmanager
    async def _turn(self, incident_ids: Iterable[str]) -> AsyncIterator[None]:
        # Locks taken in sorted order: two batches over the same incidents cannot deadlock.
        async with AsyncExitStack() as stack:
            for incident_id in incident_ids:
                lock = self._locks.get(incident_id)
                if lock is None:
                    lock = self._locks[incident_id] = asyncio.Lock()
                await stack.enter_async_context(lock)
            yield

    async def _handle(self, builders: Mapping[str, Builder]) -> Accepted | Refused | None:
        seen: dict[str, _Seen | None] = {i: self._seen.get(i) for i in builders}
        fresh: set[str] = set()
        for attempt in range(self._attempts):
            missing = [i for i, view in seen.items() if view is None]
            for incident_id, loaded in zip(
                missing, await asyncio.gather(*map(self._load, missing)), strict=True
            ):
                seen[incident_id] = loaded
                fresh.add(incident_id)
            views = {i: view for i, view in seen.items() if view is not None}
            groups = _built(views, builders)
            if groups is None:
                return None
            originals, decided, refused = _decide_groups(views, groups)
            if refused is not None or not decided:
                # A refusal or no-op from a cached view must be confirmed against the log.
                stale = [
                    i for i in views if i not in fresh and not await self._current(i, views[i])
                ]
                if not stale:
                    for incident_id, view in views.items():
                        self._remember(incident_id, view)
                    return refused if refused is not None else Accepted(originals)
                seen.update(dict.fromkeys(stale))
                continue
            now = self.clock()
            sealed = [
                (seal(events, views[i].head_hash, now), views[i].last_seq)
                for i, events in decided.items()
            ]
            try:
                appended = await self._commits.append(sealed)
            except ConcurrencyError:
                for incident_id in decided:
                    self._seen.pop(incident_id, None)
                    seen[incident_id] = None
                # Jitter spreads writers that collided so the next round has a winner.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            for incident_id in decided:
                mine = [a for a in appended if a.event.incident_id == incident_id]
                if any(a.duplicate for a in mine):
                    self._seen.pop(incident_id, None)
                else:
                    views[incident_id].extend(mine)
                    self._remember(incident_id, views[incident_id])
            crash_point("after_publish")  # stored, not answered: the caller's retry finds it
            return Accepted(originals + appended)
        raise ContentionError(
            f"incidents {', '.join(builders)} changed {self._attempts} times while deciding"
        )

    async def _load(self, incident_id: str) -> _Seen:
        loaded = await self.store.load(incident_id)
        # Folding and indexing a long incident is CPU work: off the event loop.
        return await asyncio.to_thread(_Seen, loaded)

    async def _current(self, incident_id: str, seen: _Seen) -> bool:
        return await self.store.incident_last_seq(incident_id) == seen.last_seq

    def _remember(self, incident_id: str, seen: _Seen) -> None:
        self._seen[incident_id] = seen
        self._seen.move_to_end(incident_id)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)


def _fixed(commands: Sequence[AnyCommand]) -> Builder:
    return lambda _: commands


def _built(
    views: Mapping[str, _Seen], builders: Mapping[str, Builder]
) -> dict[str, Sequence[AnyCommand]] | None:
    """Each incident's commands as its builder makes them from its view; None if one declined."""
    groups: dict[str, Sequence[AnyCommand]] = {}
    for incident_id, build in builders.items():
        commands = build(views[incident_id])
        if commands is None:
            return None
        groups[incident_id] = commands
    return groups


class _Known:
    """Ids an amendment may target: the incident's own events, stored or decided in this batch."""

    def __init__(self, seen: _Seen) -> None:
        self.stored = seen.by_id
        self.new: set[str] = set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.new or event_id in self.stored


def _decide_groups(
    views: Mapping[str, _Seen], groups: Mapping[str, Sequence[AnyCommand]]
) -> tuple[list[Appended], dict[str, list[AnyEvent]], Refused | None]:
    """Originals of commands already stored, each incident's new events, or the first refusal."""
    originals: list[Appended] = []
    decided: dict[str, list[AnyEvent]] = {}
    for incident_id, commands in groups.items():
        seen = views[incident_id]
        state, known = seen.state, _Known(seen)
        for command in commands:
            original = already_stored(seen, command_event_id(command))
            if original:
                originals.extend(original)
                continue
            decision = decide(command, state, known)
            if isinstance(decision, Rejected):
                return originals, decided, Refused(command, decision)
            if decision:
                decided.setdefault(incident_id, []).extend(decision)
                known.new.update(event.event_id for event in decision)
            state = fold(decision, state)
    return originals, decided, None
