"""Pruning: the projector's side of retention, when records age out of the stream (`max_age`).

`prune` removes what was derived only from the expired records, inside the projector's write
transaction (which moves the checkpoint past them), so the models stay a fold of what the log
holds; it queues a `retention.advanced` audit record there, which the projector appends to the
log after the commit (`retention.publish`). `watch` checks the log's retention while the
projector follows it, as the log may be idle. The records and tables are `retention`'s.
"""

import asyncio
import logging
from datetime import datetime
from typing import Protocol

import duckdb
import nats.errors
from msgspec import Struct

from events.incident import fold
from events.records import Stored
from events.store import StoreUnavailableError
from projections import quarantine, retention, rows
from projections.retention import Expired, RetentionAdvanced

log = logging.getLogger(__name__)


class Pruned(Struct, frozen=True, kw_only=True):
    """What one prune changed, for the projector to bring its memory in line after the commit."""

    first_seq_before: int
    first_seq_after: int
    seen_to: int  # the projector's checkpoint before the prune
    expired: dict[str, Expired]
    kept: rows.States  # incidents re-folded from their retained events
    record: RetentionAdvanced | None  # queued for the log, None when not witnessed
    unquarantined: int = 0  # quarantined records that aged out with the rest

    @property
    def events(self) -> int:
        return sum(e.events for e in self.expired.values())

    def report(self) -> None:
        log.info(
            "retention: first retained sequence %s -> %s, %s events of %s incidents expired",
            self.first_seq_before,
            self.first_seq_after,
            self.events,
            len(self.expired),
        )
        if self.record is None:
            log.warning(
                "records %s..%s expired before this projector read them: no retention record",
                self.seen_to + 1,
                self.first_seq_after - 1,
            )


def prune(
    cur: duckdb.DuckDBPyConnection,
    first_seq: int,
    *,
    before: int,
    seen_to: int,
    last_seq: int,
    now: datetime,
    carry_every_s: float | None,
    stream: str,
) -> Pruned:
    """Forget records below `first_seq` (the first retained sequence was `before`) in `cur`'s
    transaction, for a projector whose checkpoint is `seen_to`.

    Deletes their event rows and quarantined records, re-folds every incident that had some
    from its retained events (corrections and retractions included: as a fresh fold would,
    which never saw the expired ones), rebuilds its alerts, and records the new first retained
    sequence. `last_seq`: the stream's last sequence when `first_seq` was read.
    `carry_every_s`: see `retention.carry`.
    """
    expired = retention.expire(cur, first_seq)
    unquarantined = quarantine.expire(cur, first_seq)
    kept = refold(cur, set(expired))
    retention.remember(cur, expired, now)
    record = None
    # It read every expired record, so it can vouch for their heads.
    if seen_to + 1 >= first_seq:
        heads = retention.carry(cur, now, carry_every_s)
        record = RetentionAdvanced(
            stream=stream,
            first_seq_before=before,
            first_seq_after=first_seq,
            expired_records=first_seq - before,
            expired_events=sum(e.events for e in expired.values()),
            advanced_at=now,
            expired=expired,
            heads=heads | {i: e.head for i, e in expired.items()},
        )
        retention.stage(cur, record)
    if seen_to >= last_seq:
        retention.settle(cur)
    retention.set_first_retained(cur, first_seq)
    return Pruned(
        first_seq_before=before,
        first_seq_after=first_seq,
        seen_to=seen_to,
        expired=expired,
        kept=kept,
        record=record,
        unquarantined=unquarantined,
    )


def refold(cur: duckdb.DuckDBPyConnection, touched: set[str]) -> rows.States:
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
    cur.execute("DELETE FROM action_items WHERE incident_id IN (SELECT unnest(?))", ids)
    cur.execute(
        "UPDATE events SET effective_at = occurred_at, retracted = false "
        "WHERE incident_id IN (SELECT unnest(?))",
        ids,
    )
    rows.corrections(cur, kept)
    rows.alerts(cur, kept)
    rows.save(cur, states)
    return states


class Retaining(Protocol):
    """What `watch` needs of a projector."""

    retention_check_s: float

    async def retain(self) -> int: ...


async def watch(projector: Retaining) -> None:
    """Catch up with the log's retention every `retention_check_s` seconds, for ever."""
    while True:
        await asyncio.sleep(projector.retention_check_s)
        try:
            await projector.retain()
        except (StoreUnavailableError, nats.errors.Error) as exc:
            log.warning("retention check failed (%r); trying again later", exc)
        except Exception:  # a failed prune rolled back: projecting goes on, and so do checks
            log.exception("retention check failed; trying again later")
