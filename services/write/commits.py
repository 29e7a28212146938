"""Group commit: the appends of concurrent writers go to the log together.

A writer that finds no append out goes at once. While one is out, the appends that arrive
wait; when it returns they go as one atomic batch (`EventStore.append_all`): one commit
instead of one per writer. JetStream commits an atomic batch in ~2 ms whatever its size, one
batch of a stream at a time, while a plain publish costs ~0.2-0.4 ms (pipelined or not); so a
group is merged when it holds a decision that needs a batch anyway (several events) or enough
single events to be worth one, and otherwise its appends go as plain publishes, pipelined.

Writers of a group never share an incident (each holds its incidents' turn while it waits;
a second append for an incident already in the group waits for the next group), so merging
changes no expectation. A merged batch is all stored or none: when it fails for a reason of
one writer (a conflict, an id another incident holds, an event too large) each writer's append
goes again on its own, so one conflict fails only its own writer. A failure of the log itself
(an outage) fails every writer of the group, as it would have failed each alone.
"""

import asyncio
from collections.abc import Sequence
from typing import Final

from events.ids import EventIdTakenError
from events.schema import AnyEvent
from events.store import Appended, ConcurrencyError, EventStore, EventTooLargeError

Decisions = Sequence[tuple[Sequence[AnyEvent], int]]  # each incident's events, expected seq

# JetStream's largest atomic batch (and so the most id claims of one batch).
MAX_GROUP_EVENTS: Final = 1000
# Single-event appends pipelined as plain publishes cost less than one batch commit below this.
MERGE_FROM: Final = 8
# What only its own writer can fix: the others of a merged group go again without it.
_OWN_FAILURES: Final = (ConcurrencyError, EventIdTakenError, EventTooLargeError)


class _Pending:
    def __init__(self, decisions: Decisions) -> None:
        self.decisions = decisions
        self.incidents = {events[0].incident_id for events, _ in decisions if events}
        self.events = sum(len(events) for events, _ in decisions)
        self.answer: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()

    def settle(self, outcome: list[Appended] | BaseException) -> None:
        if self.answer.done():  # its writer went away (cancelled): nobody to tell
            return
        if isinstance(outcome, BaseException):
            self.answer.set_exception(outcome)
        else:
            self.answer.set_result(outcome)


class GroupCommit:
    def __init__(
        self,
        store: EventStore,
        max_events: int = MAX_GROUP_EVENTS,
        merge_from: int = MERGE_FROM,
    ) -> None:
        self._store = store
        self._max_events = max_events
        self._merge_from = merge_from
        self._queue: list[_Pending] = []
        self._busy = False  # an append is out: the next ones wait for it and go together
        self._draining: asyncio.Task[None] | None = None

    async def append(self, decisions: Decisions) -> list[Appended]:
        """`EventStore.append_all` of one writer, committed with those of concurrent writers."""
        if self._busy:
            pending = _Pending(decisions)
            self._queue.append(pending)
            return await pending.answer
        # Nothing out: this writer goes at once, alone (no wait, no task).
        self._busy = True
        try:
            return await self._store.append_all(decisions)
        finally:
            if self._queue:
                self._draining = asyncio.create_task(self._drain(), name="group commit")
            else:
                self._busy = False

    async def _drain(self) -> None:
        group: list[_Pending] = []
        try:
            while self._queue:
                group = self._take()
                await self._commit(group)
        finally:
            self._busy = False
            self._draining = None
            # Only a cancelled drain (the loop shutting down) leaves writers here.
            for pending in [*group, *self._queue]:
                pending.answer.cancel()
            self._queue = []

    def _take(self) -> list[_Pending]:
        """The next group: waiting writers in arrival order, on distinct incidents, within
        one batch's size (a writer larger than that alone goes alone)."""
        group: list[_Pending] = []
        incidents: set[str] = set()
        events = 0
        rest: list[_Pending] = []
        for pending in self._queue:
            if pending.answer.done():
                continue  # cancelled while waiting: its append never went out
            if group and (
                pending.incidents & incidents or events + pending.events > self._max_events
            ):
                rest.append(pending)
                continue
            group.append(pending)
            incidents |= pending.incidents
            events += pending.events
        self._queue = rest
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        merged = len(group) > 1 and (
            any(pending.events > 1 for pending in group)
            or sum(pending.events for pending in group) >= self._merge_from
        )
        if not merged:
            await self._each(group)
            return
        try:
            appended = await self._store.append_all(
                [decision for pending in group for decision in pending.decisions]
            )
        except _OWN_FAILURES:
            await self._each(group)
            return
        except Exception as exc:  # the log's failure is every writer's: each answers it
            for pending in group:
                pending.settle(exc)
            return
        start = 0
        for pending in group:  # the batch holds each writer's events in turn
            pending.settle(appended[start : start + pending.events])
            start += pending.events

    async def _each(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            try:
                group[0].settle(await self._store.append_all(group[0].decisions))
            except Exception as exc:  # the writer's own failure, answered to it
                group[0].settle(exc)
            return
        outcomes = await asyncio.gather(
            *(self._store.append_all(pending.decisions) for pending in group),
            return_exceptions=True,
        )
        for pending, outcome in zip(group, outcomes, strict=True):
            pending.settle(outcome)
