"""The projector: folds the log into DuckDB, exactly once, from its checkpoint.

Each batch of events and the checkpoint (last stream sequence) commit in one DuckDB
transaction, so a crash at any point resumes from checkpoint + 1 with nothing lost and nothing
applied twice; events at or below the checkpoint are skipped. No consumer acks: the checkpoint
is the position (an ordered consumer, DESIGN 12). Incidents are folded with the domain's own
`evolve`, so the read models cannot disagree with what writers decide on.

Retention: when records age out of the stream (`max_age`), `prune` removes what was derived
only from them in one transaction, so the models stay a fold of what the log holds, and queues a
`retention.advanced` audit record that `retain` appends to the log (see `retention`).

Crash points for tests: INCIDENTS_PROJECTOR_CRASH=before_write|after_write|after_commit makes
the process exit abruptly at that point of the first batch it applies.
"""

import asyncio
import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import duckdb
import msgspec
import nats.errors

from events.incident import INITIAL, Incident, evolve, fold
from events.schema import (
    AlertFired,
    AlertResolved,
    AnyEvent,
    EventCorrected,
    EventRetracted,
    Role,
    type_name,
)
from events.store import EventStore, Stored, StoreUnavailableError
from events.tasks import finish, stop
from projections import retention, schema

log = logging.getLogger(__name__)
T = TypeVar("T")

CACHED_STATES: Final = 10_000
CRASH_ENV: Final = "INCIDENTS_PROJECTOR_CRASH"
CRASH_POINTS: Final = ("before_write", "after_write", "after_commit")
_state_codec: Final = msgspec.json.Decoder(Incident)
# Sets sorted: the same state encodes to the same bytes in every process (hash seeds differ).
_encode: Final = msgspec.json.Encoder(order="deterministic").encode


def _append(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[tuple[Any, ...]],
    action: Literal["insert", "upsert"] = "insert",
) -> None:
    # The appender, not executemany: ~500x faster for bulk rows (DESIGN 12).
    appender = cur.appender(table, action=action)
    appender.append_rows(rows)
    appender.flush()


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.error("crash point %s reached: exiting abruptly", name)
        os._exit(70)


def _event_row(stored: Stored) -> tuple[Any, ...]:
    e = stored.event
    return (
        stored.seq,
        e.event_id,
        e.incident_id,
        type_name(e),
        e.occurred_at,
        e.recorded_at or e.occurred_at,
        e.actor,
        e.source.value,
        e.trace_id,
        e.span_id,
        e.correlation_id,
        e.causation_id,
        e.hash,
        stored.raw.decode(),
        e.occurred_at,
        False,
    )


def _incident_row(state: Incident, first_seq: int, last_seq: int) -> tuple[Any, ...]:
    return (
        state.incident_id,
        state.title,
        state.severity.value if state.severity else "",
        state.category.value if state.category else "",
        list(state.services),
        state.status.value if state.status else "",
        state.phase.value if state.phase else "",
        state.opened_at,
        state.detected_at,
        state.acknowledged_at,
        state.mitigated_at,
        state.resolved_at,
        state.closed_at,
        state.holder(Role.COMMANDER),
        _encode({role.value: person for role, person in state.roles}).decode(),
        state.escalation_level,
        sum(1 for m in state.mitigations if m.outcome is None),
        len(state.alerts_firing),
        state.comms_count,
        state.last_comms_at,
        state.next_update_at,
        state.postmortem_published_at,
        state.reopen_count,
        sum(1 for a in state.action_items if not a.done),
        first_seq,
        last_seq,
        _encode(state),
    )


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
        schema.create(con)
        retention.create(con)
        self._store = store
        # Committed states of recently active incidents; older ones are read back from the
        # table. Bounded: a replay of a million events would otherwise keep every incident.
        self._states: OrderedDict[str, tuple[Incident, int]] = OrderedDict()
        self.checkpoint: int = con.execute("SELECT seq FROM checkpoint WHERE id = 1").fetchone()[0]  # type: ignore[index]
        cur = con.cursor()
        try:
            self.first_retained = retention.first_retained(cur)
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

    @contextlib.contextmanager
    def _transaction(
        self, position: int, updated_at: datetime | None = None, crash_points: bool = True
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction that also moves the checkpoint to `position`: rows and
        position commit together or not at all."""
        cur = self._con.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
            cur.execute(
                "UPDATE checkpoint SET seq = ?, updated_at = ? WHERE id = 1",
                [position, updated_at or datetime.now(UTC)],
            )
            if crash_points:
                _crash_point("after_write")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def apply(self, events: Sequence[Stored], position: int) -> int:
        """Commit `events` (stream order) and the new checkpoint `position` as one transaction."""
        with self._writing:
            return self._apply(events, position)

    def _apply(self, events: Sequence[Stored], position: int) -> int:
        # Pruning moves the checkpoint past expired records: none is applied after its prune.
        fresh = [s for s in events if s.seq > self.checkpoint]
        if position <= self.checkpoint:
            return self.checkpoint
        _crash_point("before_write")
        with self._transaction(position) as cur:
            known = self._states_of(cur, {s.event.incident_id for s in fresh})
            states = self._fold(known, fresh)
            if fresh:
                _append(cur, "events", [_event_row(s) for s in fresh])
                self._corrections(cur, fresh)
                self._alerts(cur, fresh)
            if states:
                self._save(cur, states)
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
        _crash_point("after_commit")
        return position

    def prune(
        self, first_seq: int, last_seq: int | None = None
    ) -> retention.RetentionAdvanced | None:
        """Forget records below `first_seq`, which aged out of the log, in one transaction.

        Deletes their event rows, re-folds every incident that had some from its retained events
        (corrections and retractions included: as a fresh fold would, which never saw the
        expired ones), rebuilds its alerts, and records the new first retained sequence. Returns
        the audit record it queued for the log, None when there is nothing this projector
        witnessed. `last_seq`: the stream's last sequence when `first_seq` was read.
        """
        with self._writing:
            return self._prune(first_seq, self.checkpoint if last_seq is None else last_seq)

    def _prune(self, first_seq: int, last_seq: int) -> retention.RetentionAdvanced | None:
        before = self.first_retained
        if first_seq <= before:
            return None
        position = max(self.checkpoint, first_seq - 1)
        # It read every expired record, so it can vouch for their heads.
        witnessed = self.checkpoint + 1 >= first_seq
        now = datetime.now(UTC)
        with self._transaction(position, updated_at=now, crash_points=False) as cur:
            expired = retention.expire(cur, first_seq)
            kept = self._refold(cur, set(expired))
            retention.remember(cur, expired, now)
            record = None
            if witnessed:
                heads = retention.carry(cur, now, self.carry_every_s)
                record = retention.RetentionAdvanced(
                    stream=self._store.stream if self._store else "",
                    first_seq_before=before,
                    first_seq_after=first_seq,
                    expired_records=first_seq - before,
                    expired_events=sum(e.events for e in expired.values()),
                    advanced_at=now,
                    expired=expired,
                    heads=heads | {i: e.head for i, e in expired.items()},
                )
                retention.stage(cur, record)
            if self.checkpoint >= last_seq:
                retention.settle(cur)
            retention.set_first_retained(cur, first_seq)
        for incident_id in expired:
            self._states.pop(incident_id, None)
        self._remember({k: (st, first) for k, (st, first, _) in kept.items()})
        seen_to = self.checkpoint
        self.first_retained = first_seq
        self.checkpoint = position
        self.expired += sum(e.events for e in expired.values())
        log.info(
            "retention: first retained sequence %s -> %s, %s events of %s incidents expired",
            before,
            first_seq,
            sum(e.events for e in expired.values()),
            len(expired),
        )
        if not witnessed:
            log.warning(
                "records %s..%s expired before this projector read them: no retention record",
                seen_to + 1,
                first_seq - 1,
            )
        return record

    def _refold(
        self, cur: duckdb.DuckDBPyConnection, touched: set[str]
    ) -> dict[str, tuple[Incident, int, int]]:
        """Rebuild the rows of `touched` incidents from their retained events only."""
        if not touched:
            return {}
        ids = [sorted(touched)]
        kept = retention.retained(cur, touched)
        by_incident: dict[str, list[Stored]] = {}
        for stored in kept:
            by_incident.setdefault(stored.event.incident_id, []).append(stored)
        states = {
            incident_id: (fold(s.event for s in stored), stored[0].seq, stored[-1].seq)
            for incident_id, stored in by_incident.items()
        }
        # Rows go where a fresh fold puts them: declared incidents in `incidents`, the others
        # (declaration expired) in `partial_incidents`, none when nothing is left.
        whole = {i for i, (st, _, _) in states.items() if st.declared}
        cur.execute(
            "DELETE FROM incidents WHERE incident_id IN (SELECT unnest(?))",
            [sorted(touched - whole)],
        )
        retention.forget_partial(cur, sorted(touched - (states.keys() - whole)))
        # Derived columns start over: an expired correction no longer applies.
        cur.execute("DELETE FROM alerts WHERE incident_id IN (SELECT unnest(?))", ids)
        cur.execute(
            "UPDATE events SET effective_at = occurred_at, retracted = false "
            "WHERE incident_id IN (SELECT unnest(?))",
            ids,
        )
        self._corrections(cur, kept)
        self._alerts(cur, kept)
        self._save(cur, states)
        return states

    @staticmethod
    def _save(cur: duckdb.DuckDBPyConnection, states: dict[str, tuple[Incident, int, int]]) -> None:
        """Upsert folded states: declared incidents as rows of `incidents`, others as partial.

        An incident is partial when its declaration aged out of the log but later events remain:
        no status-board row and no metrics (they start at the declaration), but its state, so
        the events still to come fold on the same state in every projector.
        """
        rows = [
            _incident_row(st, first, last) for st, first, last in states.values() if st.declared
        ]
        if rows:
            _append(cur, "incidents", rows, action="upsert")
        partial = [
            (incident_id, first, last, _encode(st))
            for incident_id, (st, first, last) in states.items()
            if not st.declared
        ]
        if partial:
            _append(cur, "partial_incidents", partial, action="upsert")

    @staticmethod
    def _fold(
        known: dict[str, tuple[Incident, int]], fresh: Sequence[Stored]
    ) -> dict[str, tuple[Incident, int, int]]:
        folded: dict[str, tuple[Incident, int, int]] = {}
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

    @staticmethod
    def _corrections(cur: duckdb.DuckDBPyConnection, fresh: Iterable[Stored]) -> None:
        for stored in fresh:
            event: AnyEvent = stored.event
            if isinstance(event, EventCorrected) and event.corrected_occurred_at is not None:
                cur.execute(
                    "UPDATE events SET effective_at = ? WHERE incident_id = ? AND event_id = ?",
                    [event.corrected_occurred_at, event.incident_id, event.target_event_id],
                )
            elif isinstance(event, EventRetracted):
                cur.execute(
                    "UPDATE events SET retracted = true WHERE incident_id = ? AND event_id = ?",
                    [event.incident_id, event.target_event_id],
                )

    @staticmethod
    def _alerts(cur: duckdb.DuckDBPyConnection, fresh: Iterable[Stored]) -> None:
        """Fold alert events into one row per (incident, fingerprint), upserted in bulk."""
        touched: dict[tuple[str, str], list[Any]] = {}
        for stored in fresh:
            event = stored.event
            if isinstance(event, AlertFired | AlertResolved):
                touched.setdefault((event.incident_id, event.fingerprint), []).append(stored)
        if not touched:
            return
        keys = [f"{i}\x00{f}" for i, f in touched]
        cur.execute(
            "SELECT * FROM alerts WHERE incident_id || chr(0) || fingerprint IN (SELECT unnest(?))",
            [keys],
        )
        rows = {(r[0], r[1]): list(r) for r in cur.fetchall()}
        for key, stored_events in touched.items():
            row = rows.get(key)
            for stored in stored_events:
                event = stored.event
                if isinstance(event, AlertFired):
                    start = event.starts_at or event.occurred_at
                    if row is None:
                        row = [
                            *key,
                            event.alertname,
                            event.severity,
                            True,
                            start,
                            None,
                            stored.seq,
                            0,
                        ]
                    row[4:7] = [True, start, None]
                elif row is not None:  # resolved: only an alert seen firing has a row
                    row[4] = False
                    row[6] = event.ends_at or event.occurred_at
                if row is not None:
                    row[8] = stored.seq
            if row is not None:
                rows[key] = row
        _append(cur, "alerts", [tuple(rows[k]) for k in touched if k in rows], action="upsert")

    async def retain(self) -> int:
        """Catch up with the log's retention: prune what aged out, append the audit records.

        One stream info request when nothing expired. Returns the first retained sequence.
        """
        if self._store is None:
            raise RuntimeError("a projector without a store cannot read the log's retention")
        first_seq, last_seq = await self._store.bounds()
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
            self._con.execute(
                "DELETE FROM retention_outbox WHERE first_seq_after = ?", [first_seq_after]
            )

    async def _watch_retention(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_s)
            try:
                await self.retain()
            except (StoreUnavailableError, nats.errors.Error) as exc:
                log.warning("retention check failed (%r); trying again later", exc)
            except Exception:  # a failed prune rolled back: projecting goes on, and so do checks
                log.exception("retention check failed; trying again later")

    async def run(self) -> None:
        """Follow the log for ever from checkpoint + 1, resuming there after an outage.

        Retention is checked before following, every `retention_check_s` seconds (the log may be
        idle), and whenever the log delivers past checkpoint + 1 (those records expired).
        """
        if self._store is None:
            raise RuntimeError("a projector without a store cannot follow the log")
        watcher = asyncio.create_task(self._watch_retention(), name="projector-retention")
        try:
            while True:
                try:
                    await self.retain()
                    async for batch in self._store.follow(self.checkpoint + 1):
                        if batch.first_seq > self.checkpoint + 1:
                            # Records expired before they reached us: prune up to the batch.
                            last_seq = batch.last_seq + batch.pending
                            await self._in_thread(self.prune, batch.first_seq, last_seq)
                        await self._in_thread(self.apply, batch.events, batch.last_seq)
                        self.pending = batch.pending
                        await self._notify()
                except (StoreUnavailableError, nats.errors.Error) as exc:
                    log.warning(
                        "projector lost the log (%r); resuming from %s", exc, self.checkpoint
                    )
                    await asyncio.sleep(1.0)
        finally:
            await stop(watcher)

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
