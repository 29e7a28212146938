"""Retention: when events age out of the stream, the read models stay a fresh fold of the log,
and each advance is recorded in the log so the retained chains still verify.

A real nats-server with a stream `max_age` of a few seconds (JetStream refuses < 100 ms, and a
duplicate window longer than `max_age`): incidents written before and after a pause, so that
the early events expire while the later ones are retained.
"""

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from nats.aio.client import Client as NATS
from tests_support import T0, declare, envelope, note

from events.chain import seal, verify
from events.commands import (
    Acknowledge,
    CorrectEvent,
    RecordAlertFired,
    RecordAlertResolved,
    RetractEvent,
)
from events.incident import Incident
from events.records import Stored
from events.schema import (
    AlertFired,
    AlertResolved,
    EventCorrected,
    EventRetracted,
    IncidentAcknowledged,
    IncidentDeclared,
    IncidentNoteAdded,
    IncidentResolved,
    Severity,
    Source,
    encode,
)
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from events.subjects import ALL_INCIDENTS
from projections import retention
from projections.database import open_database
from projections.projector import Projector
from services.write.handler import Accepted, CommandHandler

RETENTION_S = 6.0  # early events expire ~6.3 s after writing, late ones not before ~9.3 s
CHECK_S = 0.1


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "events": "SELECT * FROM events ORDER BY seq",
        "incidents": "SELECT * FROM incidents ORDER BY incident_id",
        "alerts": "SELECT * FROM alerts ORDER BY incident_id, fingerprint",
        "partial_incidents": "SELECT * FROM partial_incidents ORDER BY incident_id",
        "checkpoint": "SELECT seq FROM checkpoint",
    }
    return {name: con.execute(sql).fetchall() for name, sql in tables.items()}


async def fresh_fold(store: EventStore, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The read models built from scratch from what the log holds now."""
    con = open_database(path)
    projector = Projector(con, None)
    events = [s async for batch in store.read() for s in batch]
    projector.apply(events, await store.last_seq())
    result = snapshot(con)
    con.close()
    return result


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def following(projector: Projector) -> AsyncIterator[None]:
    task = asyncio.create_task(projector.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def short_store(nc: NATS) -> EventStore:
    await ensure_stream(nc, StreamSettings(retention_s=RETENTION_S, duplicate_window_s=1.0))
    return EventStore(nc)


async def handle(handler: CommandHandler, *commands: Any) -> list[int]:
    seqs: list[int] = []
    for command in commands:
        accepted = await handler.handle(command)
        assert isinstance(accepted, Accepted), command
        seqs.extend(a.seq for a in accepted.events)
    return seqs


async def test_expired_events_leave_the_models_and_the_log_records_it(
    short_store: EventStore, tmp_path: Path
) -> None:
    store = short_store
    handler = CommandHandler(store)
    con = open_database(tmp_path / "live.duckdb")
    live = Projector(con, store, retention_check_s=CHECK_S)
    lagging_con = open_database(tmp_path / "lagging.duckdb")
    lagging = Projector(lagging_con, store)
    direct_con = open_database(tmp_path / "direct.duckdb")
    direct = Projector(direct_con, store)

    async with following(live):
        # Early: "gone" expires whole; "span" keeps its later events.
        early = await handle(
            handler,
            declare("gone"),
            Acknowledge(**envelope("gone", "gone-ack", 2)),
            declare("span", commander="dan@example.com"),
            Acknowledge(**envelope("span", "span-ack", 3)),
            note("span", "span-n1"),
            RecordAlertFired(**envelope("span", "span-a1", 1), fingerprint="f1"),
            RecordAlertFired(**envelope("span", "span-a2", 1), fingerprint="f2"),
        )
        lagging.apply([s async for b in store.read(until_seq=early[2]) for s in b], early[2])
        await asyncio.sleep(RETENTION_S / 2)  # what expiry needs: a cut-off between the two
        # Late: a correction and a retraction whose targets expire, an alert resolved whose
        # firing expires, and an incident wholly after the cut-off.
        late = await handle(
            handler,
            note("span", "span-n2", "still looking"),
            CorrectEvent(
                **envelope("span", "span-fix", 30),
                target_event_id="span-ack",
                corrected_occurred_at=T0 + timedelta(minutes=1),
                reason="acknowledged on the bridge before it was typed",
            ),
            RetractEvent(**envelope("span", "span-rx", 31), target_event_id="span-n1", reason="x"),
            RecordAlertResolved(**envelope("span", "span-a1r", 40), fingerprint="f1"),
            declare("new"),
            Acknowledge(**envelope("new", "new-ack", 2)),
        )
        before = await fresh_fold(store, tmp_path / "before.duckdb")
        assert {r[0] for r in before["alerts"]} == {"span"}
        direct.apply([s async for b in store.read() for s in b], late[-1])

        async def pruned() -> bool:
            return live.first_retained >= late[0]

        await until(pruned)
        found: list[tuple[int, retention.RetentionAdvanced]] = []

        async def recorded() -> bool:
            found[:] = await retention.records(store)
            return any(r.first_seq_after >= late[0] for _, r in found)

        await until(recorded)
        first_seq, last_seq = await store.bounds()
        assert first_seq == late[0], "late events expired: the machine is too slow for the test"
        await live.wait(last_seq)
        assert snapshot(con) == await fresh_fold(store, tmp_path / "fresh.duckdb")

    # What a fresh fold of the log makes of "span": its early facts are gone with the log.
    rows = dict(con.execute("SELECT incident_id, first_seq FROM incidents").fetchall())
    assert rows == {"new": late[4]}
    partial = con.execute("SELECT incident_id, first_seq, state FROM partial_incidents").fetchall()
    assert [(i, first) for i, first, _ in partial] == [("span", late[0])]
    span = msgspec.json.decode(partial[0][2], type=Incident)
    assert not span.declared and span.retracted == {"span-n1"} and not span.alerts_firing
    assert con.execute("SELECT min(seq) FROM events").fetchone() == (late[0],)
    assert con.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    assert con.execute(
        "SELECT count(*) FROM events WHERE retracted OR effective_at <> occurred_at"
    ).fetchone() == (0,)

    # The records: counts per advance, heads of the expired chains, one record per advance.
    records = [r for _, r in found]
    assert [r.first_seq_after for r in records] == sorted({r.first_seq_after for r in records})
    assert records[0].first_seq_before == 1
    assert records[-1].first_seq_after == late[0]
    assert sum(r.expired_events for r in records) == len(early) == late[0] - 1
    assert sum(r.expired_records for r in records) == late[0] - 1
    expired: dict[str, int] = {}
    for record in records:
        for incident_id, gone in record.expired.items():
            expired[incident_id] = expired.get(incident_id, 0) + gone.events
    assert expired == {"gone": 2, "span": 6}
    span_log = [s async for b in store.read(subject_filter="incidents.span.>") for s in b]
    heads = retention.chain_heads(records)
    assert heads["span"] == span_log[0].event.prev_hash != ""
    assert records[-1].heads["span"].seq == early[-1]

    # The retained log verifies with the recorded heads; without them "span" looks cut.
    raw = [(s.seq, s.raw) async for b in store.read(subject_filter=ALL_INCIDENTS) for s in b]
    assert verify(raw, heads) == []
    assert [b.incident_id for b in verify(raw)] == ["span"]

    # Another projector that saw it all, pruned directly: the same models, the same one record.
    direct_record = direct.prune(first_seq, last_seq)
    assert direct_record is not None and direct_record.expired_events == len(early)
    assert direct_record.heads["span"] == records[-1].heads["span"]
    direct.apply([], last_seq)
    assert snapshot(direct_con) == snapshot(con)
    assert await direct.publish_retention() == 0
    assert direct.prune(first_seq) is None

    # One whose checkpoint + 1 expired: it catches up without stalling and records nothing.
    assert lagging.checkpoint + 1 < late[0]
    async with following(lagging):
        await lagging.wait(last_seq)
    assert snapshot(lagging_con) == snapshot(con)
    assert [r for _, r in await retention.records(store)] == records

    # Replay: a new projector over what the log holds equals the live models, and pruning
    # again is a no-op.
    replayed_con = open_database(tmp_path / "replayed.duckdb")
    replayed = Projector(replayed_con, store)
    async with following(replayed):
        await replayed.wait(last_seq)
    assert replayed.first_retained == late[0]
    assert snapshot(replayed_con) == snapshot(con)
    assert live.prune(late[0]) is None
    assert snapshot(con) == snapshot(replayed_con)
    assert await store.bounds() == (first_seq, last_seq), "late events expired meanwhile"


def history() -> list[Stored]:
    """One log, sealed per incident, touching every derived column: corrections, retractions,
    alerts fired and resolved, and "a" declared again once its first declaration is gone."""
    at = T0
    chains: dict[str, str] = {}
    log: list[Stored] = []

    def add(cls: Any, incident_id: str, event_id: str, **fields: Any) -> None:
        nonlocal at
        at += timedelta(minutes=1)
        common = {"actor": "carol@example.com", "source": Source.CLI, "occurred_at": at}
        event = cls(event_id=event_id, incident_id=incident_id, **common, **fields)
        (sealed,) = seal([event], chains.get(incident_id, ""), at)
        chains[incident_id] = sealed.hash
        log.append(Stored(len(log) + 1, sealed, encode(sealed)))

    add(IncidentDeclared, "a", "a-d", title="Checkout 5xx", severity=Severity.P1)
    add(AlertFired, "a", "a-f1", fingerprint="f1", alertname="Errors")
    add(IncidentDeclared, "b", "b-d", title="Login slow", severity=Severity.P2)
    add(IncidentAcknowledged, "a", "a-ack")
    add(IncidentNoteAdded, "a", "a-n1", text="looking")
    add(AlertFired, "b", "b-f1", fingerprint="f1")
    add(EventCorrected, "a", "a-fix", target_event_id="a-ack", corrected_occurred_at=T0, reason="r")
    add(AlertResolved, "a", "a-r1", fingerprint="f1")
    add(EventRetracted, "a", "a-rx", target_event_id="a-n1", reason="wrong incident")
    add(IncidentAcknowledged, "b", "b-ack")
    add(EventCorrected, "b", "b-fix", target_event_id="b-ack", corrected_occurred_at=T0, reason="r")
    add(AlertFired, "a", "a-f2", fingerprint="f2")
    add(IncidentResolved, "b", "b-res")
    add(IncidentDeclared, "a", "a-d2", title="Checkout 5xx again", severity=Severity.P2)
    add(EventRetracted, "a", "a-rx2", target_event_id="a-f2", reason="flap")
    add(IncidentDeclared, "c", "c-d", title="Disk full", severity=Severity.P3)
    add(IncidentNoteAdded, "b", "b-n", text="postmortem soon")
    return log


@functools.cache
def fold_from(first_seq: int) -> dict[str, list[tuple[Any, ...]]]:
    """A fresh fold of the log when its first `first_seq - 1` events have expired."""
    log = history()
    con = open_database(":memory:")
    Projector(con, None).apply(log[first_seq - 1 :], len(log))
    return snapshot(con)


@pytest.mark.parametrize("seen", [0, 8, 17])
def test_prune_equals_a_fresh_fold_of_what_the_log_still_holds(seen: int) -> None:
    """Every cut-off, with the projector having applied `seen` events when it prunes, then the
    rest in batches of three: the same models as a fold of the retained events alone."""
    log = history()
    for first_seq in range(2, len(log) + 2):
        con = open_database(":memory:")
        projector = Projector(con, None)
        projector.apply(log[:seen], seen)
        record = projector.prune(first_seq)
        for start in range(seen, len(log), 3):
            projector.apply(log[start : start + 3], min(start + 3, len(log)))
        retained = log[first_seq - 1 :]
        assert snapshot(con) == fold_from(first_seq), first_seq
        assert projector.first_retained == first_seq
        if seen + 1 < first_seq:  # expired before it was seen: nothing to vouch for
            assert record is None
            continue
        expired = log[: first_seq - 1]
        assert record is not None and record.expired_events == len(expired)
        # The retained log verifies with the record's heads, as an auditor would check it.
        raw = [(s.seq, s.raw) for s in retained]
        assert verify(raw, retention.chain_heads([record])) == []
        assert {i: h.seq for i, h in record.heads.items()} == {
            s.event.incident_id: s.seq for s in expired
        }


@pytest.mark.parametrize(("every_s", "carried"), [(None, {"a", "b"}), (3600.0, {"a"})])
def test_later_records_carry_the_heads_retained_events_still_need(
    every_s: float | None, carried: set[str]
) -> None:
    log = history()
    projector = Projector(open_database(":memory:"), None)
    projector.apply(log, len(log))
    projector.carry_every_s = every_s
    first = projector.prune(4)  # a-d, a-f1, b-d: "a" and "b" keep later events
    second = projector.prune(6)  # a-ack, a-n1: nothing more of "b"
    assert first is not None and first.heads.keys() == {"a", "b"}
    assert second is not None and second.expired.keys() == {"a"}
    assert second.heads.keys() == carried
    # Once the first record has expired too, the second alone vouches for "b" if it carried it.
    raw = [(s.seq, s.raw) for s in log[5:]]
    broken = {b.incident_id for b in verify(raw, retention.chain_heads([second]))}
    assert broken == {"a", "b"} - carried
