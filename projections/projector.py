"""The projector: folds the log into DuckDB, exactly once, from its checkpoint.

Each batch of events and the checkpoint (last stream sequence) commit in one DuckDB
transaction, so a crash at any point resumes from checkpoint + 1 with nothing lost and nothing
applied twice; events at or below the checkpoint are skipped. No consumer acks: the checkpoint
is the position (an ordered consumer, DESIGN 12). Incidents are folded with the domain's own
`evolve`, so the read models cannot disagree with what writers decide on.

Retention: when records age out of the stream (`max_age`), `prune` removes what was derived
only from them in one transaction, so the models stay a fold of what the log holds, and queues a
`retention.advanced` audit record that `retain` appends to the log (see `pruning`, `retention`).
The rows themselves are built and written by `rows`.

Records that do not decode are quarantined: kept in the `quarantine` table in the same
transaction as the checkpoint that moves past them, in live projection and replay alike, so
projections stay a fold of the log. A projector that fails otherwise is restarted by its owner
(`services.readmodels`), which notes why in `failure` until it moves on again.

Change records (`changes.>`, deploys and config pushes outside any incident) are followed by a
reader of their own while `run` runs, with their own position committed with their rows
(`projections.changes`): the incident fold and its checkpoint are untouched by them. A rebuilt
file catches up with them once its projector runs.

Crash points for tests (`events.crash_points`): `before_write`, `after_write` (rows and
checkpoint written, not committed) and `after_commit` of a batch.
"""

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import duckdb
import msgspec
import nats.errors

from events.crash_points import reached as crash_point
from events.fetch import RawRecord
from events.incident import INITIAL, Incident, evolve
from events.records import Batch, Quarantined, Stored
from events.store import EventStore, StoreUnavailableError
from projections import changes, pruning, quarantine, retention, rows, schema
from projections.tasks import finish, stop

log = logging.getLogger(__name__)
T = TypeVar("T")

CACHED_STATES: Final = 10_000
# Records per transaction at most, when catching up: a commit of 5k events costs ~0.1 s, and an
# incident touched by a batch is written once per batch (10k vs 5k: 1.0-1.7x events/s on a busy
# 2-core machine); a decoded batch holds ~1.5 KB a record, and `project` keeps at most three
# (being decoded, waiting, being written).
BATCH_RECORDS: Final = 10_000
CHANGES_RETRY_S: Final = 1.0  # the change follower's first retry; doubles while it fails
CHANGES_RETRY_AT_MOST_S: Final = 30.0
_state_codec: Final = msgspec.json.Decoder(Incident)


async def _unless_failed(step: Awaitable[T], writer: "asyncio.Task[None]") -> T:
    """`step`'s result; if `writer` ends first, what it failed with (its transaction rolled
    back: the caller resumes from the checkpoint)."""
    waiting = asyncio.ensure_future(step)
    try:
        await asyncio.wait([waiting, writer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()  # nothing to undo once done
    if waiting.done() and not waiting.cancelled():
        return waiting.result()
    writer.result()
    raise RuntimeError("the projector's writer stopped")


class Projector:
    """The only writer of its DuckDB file."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        store: EventStore | None,
        retention_check_s: float = 5.0,
    ) -> None:
        """`store` is the log to follow in `run`; `apply` alone needs none.

        `run` asks the stream for its first sequence every `retention_check_s` seconds.
        """
        self._con = con
        outdated = schema.create(con)
        retention.create(con)
        changes.create(con)
        if outdated:
            self._upgrade()
        self._store = store
        # Committed states of recently active incidents; older ones are read back from the
        # table. Bounded: a replay of a million events would otherwise keep every incident.
        self._states: OrderedDict[str, tuple[Incident, int]] = OrderedDict()
        self.checkpoint: int = con.execute("SELECT seq FROM checkpoint WHERE id = 1").fetchone()[0]  # type: ignore[index]
        cur = con.cursor()
        try:
            self.first_retained = retention.first_retained(cur)
            # The last change record folded in (they are followed apart: `follow_changes`).
            self.changes_seq = changes.position(cur)
        finally:
            cur.close()
        self.retention_check_s = retention_check_s
        # How often a retention record repeats a chain head still needed: half the stream's
        # max_age, learnt in `retain` (None: every record carries all of them).
        self.carry_every_s: float | None = None
        # apply and prune may run in worker threads: one write transaction at a time.
        self._writing = threading.Lock()
        self._advanced = asyncio.Condition()
        self.projected = 0  # events applied by this process
        self.expired = 0  # events removed by retention in this process
        self.pending = 0  # records in the log past the checkpoint, as last seen
        self.quarantined = quarantine.count(con)  # records in the quarantine table
        if self.quarantined:
            self._release()
        self.quarantined_here = 0  # records this process quarantined
        # Set by whoever restarts `run` after it failed; cleared once it moves on again.
        self.failure: str | None = None
        self.restarts = 0

    def _upgrade(self) -> None:
        """Fold every incident again from its stored events: a file of an older schema version
        holds states and rows this version folds differently."""
        with self._atomically() as cur:
            cur.execute(
                "SELECT DISTINCT incident_id FROM events UNION SELECT incident_id FROM incidents "
                "UNION SELECT incident_id FROM partial_incidents"
            )
            touched = {str(row[0]) for row in cur.fetchall()}
            pruning.refold(cur, touched)
            schema.upgraded(cur)
        log.info("read models upgraded to schema version %s", schema.SCHEMA_VERSION)

    def _release(self) -> None:
        """Fold in the quarantined records this version decodes (an older one could not)."""
        with self._atomically() as cur:
            events = quarantine.decodable(cur)
            if events:
                pruning.refold(cur, quarantine.release(cur, events))
            released = len(events) + changes.release(cur)
        if released:
            self.quarantined -= released
            log.info("%s quarantined records decode now: folded into the read models", released)

    @contextlib.contextmanager
    def _atomically(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on a cursor of its own: committed whole, or rolled back."""
        cur = self._con.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            # A COMMIT that fails (a full disk) has rolled back already: its error is the news.
            cur.execute("COMMIT")
        finally:
            cur.close()

    @contextlib.contextmanager
    def _transaction(
        self, position: int, updated_at: datetime | None = None, crash_points: bool = True
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction that also moves the checkpoint to `position`: rows and
        position commit together or not at all."""
        with self._atomically() as cur:
            yield cur
            cur.execute(
                "UPDATE checkpoint SET seq = ?, updated_at = ? WHERE id = 1",
                [position, updated_at or datetime.now(UTC)],
            )
            if crash_points:
                crash_point("after_write")

    def apply(
        self, events: Sequence[Stored], position: int, quarantined: Sequence[Quarantined] = ()
    ) -> int:
        """Commit `events` (stream order), the records among them that do not decode and the new
        checkpoint `position` as one transaction."""
        with self._writing:
            return self._apply(events, position, quarantined)

    def _apply(
        self, events: Sequence[Stored], position: int, quarantined: Sequence[Quarantined]
    ) -> int:
        # Pruning moves the checkpoint past expired records: none is applied after its prune.
        fresh = [s for s in events if s.seq > self.checkpoint]
        strays = [q for q in quarantined if self.checkpoint < q.seq <= position]
        if position <= self.checkpoint:
            return self.checkpoint
        crash_point("before_write")
        with self._transaction(position) as cur:
            quarantine.keep(cur, strays)
            known = self._states_of(cur, {s.event.incident_id for s in fresh})
            states = self._fold(known, fresh)
            if fresh:
                rows.append(cur, "events", [rows.event_row(s) for s in fresh])
                rows.corrections(cur, fresh)
                rows.alerts(cur, fresh)
            if states:
                rows.save(cur, states)
                # Declared again after its declaration expired: a whole incident once more.
                redeclared = [
                    i
                    for i, (st, _, _) in states.items()
                    if st.declared and i in known and not known[i][0].declared
                ]
                retention.forget_partial(cur, redeclared)
        # Only committed states are remembered: a failed batch is folded again from the table.
        self._remember({k: (st, first) for k, (st, first, _) in states.items()})
        self.checkpoint = position
        self.projected += len(fresh)
        self.quarantined += len(strays)
        self.quarantined_here += len(strays)
        crash_point("after_commit")
        return position

    def apply_changes(self, records: Sequence[RawRecord]) -> int:
        """Commit change records (stream order; those that do not decode quarantined) and the
        changes position as one transaction; returns the position."""
        with self._writing:
            fresh = [r for r in records if r[0] > self.changes_seq and r[0] >= self.first_retained]
            if not fresh:
                return self.changes_seq
            found, strays = changes.split(fresh)
            position = fresh[-1][0]
            with self._atomically() as cur:
                changes.apply(cur, found, position)
                quarantine.keep(cur, strays)
            self.changes_seq = position
            self.quarantined += len(strays)
            self.quarantined_here += len(strays)
            return position

    def prune(
        self, first_seq: int, last_seq: int | None = None
    ) -> retention.RetentionAdvanced | None:
        """Forget records below `first_seq`, which aged out of the log, in one transaction that
        also moves the checkpoint past them (what it removes: `pruning.prune`).

        Returns the audit record it queued for the log, None when there is nothing this
        projector witnessed. `last_seq`: the stream's last sequence when `first_seq` was read.
        """
        with self._writing:
            return self._prune(first_seq, self.checkpoint if last_seq is None else last_seq)

    def _prune(self, first_seq: int, last_seq: int) -> retention.RetentionAdvanced | None:
        if first_seq <= self.first_retained:
            return None
        position = max(self.checkpoint, first_seq - 1)
        now = datetime.now(UTC)
        with self._transaction(position, updated_at=now, crash_points=False) as cur:
            pruned = pruning.prune(
                cur,
                first_seq,
                before=self.first_retained,
                seen_to=self.checkpoint,
                last_seq=last_seq,
                now=now,
                carry_every_s=self.carry_every_s,
                stream=self._store.stream if self._store else "",
            )
            changes.expire(cur, first_seq)
        for incident_id in pruned.expired:
            self._states.pop(incident_id, None)
        self._remember({k: (st, first) for k, (st, first, _) in pruned.kept.items()})
        self.first_retained = first_seq
        self.checkpoint = position
        self.expired += pruned.events
        self.quarantined -= pruned.unquarantined
        pruned.report()
        return pruned.record

    @staticmethod
    def _fold(known: dict[str, tuple[Incident, int]], fresh: Sequence[Stored]) -> rows.States:
        folded: rows.States = {}
        for stored in fresh:
            incident_id = stored.event.incident_id
            if incident_id in folded:
                state, first, _ = folded[incident_id]
            else:
                state, first = known.get(incident_id, (INITIAL, stored.seq))
            folded[incident_id] = (evolve(state, stored.event), first, stored.seq)
        return folded

    def _remember(self, states: dict[str, tuple[Incident, int]]) -> None:
        self._states.update(states)
        for incident_id in states:
            self._states.move_to_end(incident_id)
        while len(self._states) > CACHED_STATES:
            self._states.popitem(last=False)

    def _states_of(
        self, cur: duckdb.DuckDBPyConnection, incident_ids: set[str]
    ) -> dict[str, tuple[Incident, int]]:
        """Committed states: remembered ones, the rest in one query."""
        known = {i: self._states[i] for i in incident_ids if i in self._states}
        missing = list(incident_ids - known.keys())
        if missing:
            cur.execute(
                "SELECT incident_id, state, first_seq FROM incidents "
                "WHERE incident_id IN (SELECT unnest($1)) UNION ALL "
                "SELECT incident_id, state, first_seq FROM partial_incidents "
                "WHERE incident_id IN (SELECT unnest($1))",
                [missing],
            )
            for incident_id, state, first in cur.fetchall():
                known[incident_id] = (_state_codec.decode(state), int(first))
        return known

    async def retain(self) -> int:
        """Catch up with the log's retention: prune what aged out, append the audit records.

        One stream info request when nothing expired. Returns the first retained sequence.
        """
        if self._store is None:
            raise RuntimeError("a projector without a store cannot read the log's retention")
        first_seq, last_seq = await self._store.bounds()
        self.pending = max(last_seq - self.checkpoint, 0)
        if first_seq > self.first_retained:
            self.carry_every_s = (await self._store.max_age()) / 2 or None
            await self._in_thread(self.prune, first_seq, last_seq)
            await self._notify()
        await self.publish_retention()
        return self.first_retained

    async def publish_retention(self) -> int:
        """Append the queued retention records to the log (each once); returns how many."""
        if self._store is None:
            raise RuntimeError("a projector without a store cannot append retention records")
        cur = self._con.cursor()
        try:
            queued = retention.staged(cur)
        finally:
            cur.close()
        appended = 0
        for record in queued:
            appended += await retention.publish(self._store, record)
            await self._in_thread(self._unstage, record.first_seq_after)
        return appended

    def _unstage(self, first_seq_after: int) -> None:
        with self._writing:
            retention.unstage(self._con, first_seq_after)

    async def run(self) -> None:
        """Follow the log for ever from checkpoint + 1, resuming there after an outage.

        Retention is checked before following, every `retention_check_s` seconds (the log may be
        idle), and whenever the log delivers past checkpoint + 1 (those records expired).
        """
        if self._store is None:
            raise RuntimeError("a projector without a store cannot follow the log")
        watcher = asyncio.create_task(pruning.watch(self), name="projector-retention")
        follower = asyncio.create_task(self.follow_changes(), name="projector-changes")
        try:
            while True:
                try:
                    await self.retain()
                    if self.pending == 0:
                        self.failure = None  # caught up: nothing left to fail on
                    await self.project(self._store.follow(self.checkpoint + 1, BATCH_RECORDS))
                except (StoreUnavailableError, nats.errors.Error) as exc:
                    log.warning(
                        "projector lost the log (%r); resuming from %s", exc, self.checkpoint
                    )
                    await asyncio.sleep(1.0)
        finally:
            await stop(follower)
            await stop(watcher)

    async def project(
        self,
        batches: AsyncIterator[Batch],
        *,
        following: bool = True,
        applied: Callable[[], None] = lambda: None,
    ) -> None:
        """Apply `batches` in order; the next is read and decoded on the loop while a worker
        thread writes the last (DuckDB releases the GIL while it writes), with one batch
        waiting between the two. `following`: batches of `EventStore.follow`, where a batch
        starting past checkpoint + 1 means records expired unread (prune them first);
        `applied` is called after each commit."""
        decoded: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        writer = asyncio.create_task(self._write(decoded, following, applied), name="writer")
        try:
            reading = aiter(batches)
            while True:
                try:
                    # Waiting on an idle log too: a failed write must not wait for a record.
                    batch = await _unless_failed(anext(reading), writer)
                except StopAsyncIteration:
                    break
                await _unless_failed(decoded.put(batch), writer)
            await _unless_failed(decoded.join(), writer)
        finally:
            await stop(writer)

    async def _write(
        self, decoded: "asyncio.Queue[Batch]", following: bool, applied: Callable[[], None]
    ) -> None:
        while True:
            batch = await decoded.get()
            if following and batch.first_seq > self.checkpoint + 1:
                # Records expired before they reached us: prune up to the batch.
                last_seq = batch.last_seq + batch.pending
                await self._in_thread(self.prune, batch.first_seq, last_seq)
            await self._in_thread(self.apply, batch.events, batch.last_seq, batch.quarantined)
            if following:
                self.pending = batch.pending
                self.failure = None
            applied()
            await self._notify()
            decoded.task_done()

    async def follow_changes(self) -> None:
        """Fold change records into the `changes` table as they arrive, for ever, from the
        changes position + 1; an outage or a failed batch (rolled back) is retried."""
        if self._store is None:
            raise RuntimeError("a projector without a store cannot follow the log")
        delay = CHANGES_RETRY_S
        while True:
            try:
                async for records in changes.follow(self._store, self.changes_seq + 1):
                    await self._in_thread(self.apply_changes, records)
                    await self._notify()
                    delay = CHANGES_RETRY_S
            except (StoreUnavailableError, nats.errors.Error) as exc:
                log.warning("change records: lost the log (%r); resuming later", exc)
            except Exception:
                log.exception("change records: failed after seq %s; retrying", self.changes_seq)
                delay = min(delay * 2, CHANGES_RETRY_AT_MOST_S)
            await asyncio.sleep(delay)

    @staticmethod
    async def _in_thread(call: Callable[..., T], *args: Any) -> T:
        # Never leave a transaction half-way in another thread.
        return await finish(asyncio.ensure_future(asyncio.to_thread(call, *args)))

    async def _notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    async def wait(self, seq: int, timeout: float = 10.0) -> None:
        """Until the read models include stream sequence `seq` (read-your-writes)."""
        async with asyncio.timeout(timeout), self._advanced:
            await self._advanced.wait_for(lambda: self.checkpoint >= seq)
