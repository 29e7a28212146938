"""projections.projector against a real nats-server and real DuckDB files: the promises
mutation testing (`uv run mutmut run`, issue 16) found no test pinning.

The fold-equality tests compare the projector with itself (a fresh fold runs the same code),
so these check against the domain's own fold and against plain counts instead. Retention
cases use a sealed log built here (the stream denies purges; expiry is driven by `prune`, as
`retain` drives it) and check against a fresh fold of the retained records and `chain.verify`.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from tests_support import T0, declare, note, snapshot

from events.chain import seal, verify
from events.incident import Incident, fold
from events.records import Batch, Quarantined, Stored
from events.schema import IncidentDeclared, IncidentNoteAdded, Severity, Source, encode
from events.store import EventStore
from events.subjects import new_incident_id
from projections import retention
from projections.database import open_database
from projections.projector import Projector
from services.write.handler import Accepted, CommandHandler


async def _history(store: EventStore, incidents: int = 3, notes: int = 3) -> list[str]:
    handler = CommandHandler(store)
    ids = [new_incident_id() for _ in range(incidents)]
    for incident_id in ids:
        assert isinstance(await handler.handle(declare(incident_id)), Accepted)
        for n in range(notes):
            command = note(incident_id, f"{incident_id}-n{n}")
            assert isinstance(await handler.handle(command), Accepted)
    return ids


async def _log(store: EventStore) -> list[Stored]:
    return [s async for batch in store.read() for s in batch]


def _states(con: duckdb.DuckDBPyConnection) -> dict[str, Incident]:
    rows = con.execute("SELECT incident_id, state FROM incidents").fetchall()
    return {str(i): msgspec.json.decode(state, type=Incident) for i, state in rows}


def _domain_fold(events: list[Stored]) -> dict[str, Incident]:
    by_incident: dict[str, list[Stored]] = {}
    for stored in events:
        by_incident.setdefault(stored.event.incident_id, []).append(stored)
    return {i: fold(s.event for s in stored) for i, stored in by_incident.items()}


def _failure(projector: Projector) -> str | None:
    return projector.failure  # read back: what `_write` left, not what the test set


async def test_a_failed_write_ends_project_with_its_error_on_an_idle_log(
    store: EventStore, tmp_path: Path
) -> None:
    """The writer's failure ends `project` at once with that failure (its owner logs it and
    restarts from the checkpoint), even while the log has nothing more to deliver."""
    await _history(store, incidents=1)
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, store)
    con.close()
    with pytest.raises(duckdb.ConnectionException):
        await asyncio.wait_for(projector.project(store.follow(1)), 60)


async def test_following_the_log_clears_the_failure_and_counts_what_is_pending(
    store: EventStore, tmp_path: Path
) -> None:
    await _history(store)
    last = await store.last_seq()
    projector = Projector(open_database(tmp_path / "live.duckdb"), store)
    projector.failure = "restarted after: boom"
    projector.pending = 99
    following = asyncio.create_task(projector.project(store.follow(1, batch_size=5)))
    try:
        await projector.wait(last, timeout=60)
    finally:
        following.cancel()
        with pytest.raises(asyncio.CancelledError):
            await following
    assert (projector.checkpoint, projector.pending, _failure(projector)) == (last, 0, None)
    assert projector.projected == last


async def test_batches_applied_in_overlapping_pieces_equal_the_domain_fold(
    store: EventStore, tmp_path: Path
) -> None:
    """Redelivered records at or below the checkpoint are skipped, the rest folded on top of
    the committed states, whether remembered or read back from the file by a new projector."""
    await _history(store)
    events = await _log(store)
    path = tmp_path / "live.duckdb"
    con = open_database(path)
    projector = Projector(con, store)
    assert projector.apply(events[:4], events[3].seq) == events[3].seq
    assert projector.apply(events[2:9], events[8].seq) == events[8].seq
    assert projector.projected == 9
    con.close()
    con = open_database(path)
    again = Projector(con, store)
    assert again.checkpoint == events[8].seq
    assert again.apply(events[5:], events[-1].seq) == events[-1].seq
    assert again.projected == len(events) - 9
    assert _states(con) == _domain_fold(events)
    seqs = [row[0] for row in con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    assert seqs == [s.seq for s in events]
    assert snapshot(con)["checkpoint"] == [(events[-1].seq,)]


async def test_project_applies_every_batch_it_is_given(store: EventStore, tmp_path: Path) -> None:
    """`project` over a finite feed (a replay) applies each batch in order, with the records
    among them that do not decode, and calls `applied` after each commit."""
    await _history(store)
    events = await _log(store)
    con = open_database(tmp_path / "replay.duckdb")
    projector = Projector(con, store)
    commits: list[int] = []
    position = events[-1].seq + 1
    stray = Quarantined(position, f"incidents.{events[0].event.incident_id}.x", "bad", b"junk")

    async def batches() -> AsyncIterator[Batch]:
        for start in range(0, len(events), 4):
            piece = events[start : start + 4]
            yield Batch(piece, piece[-1].seq, first_seq=piece[0].seq)
        yield Batch([], position, first_seq=position, quarantined=[stray])

    await projector.project(
        batches(), following=False, applied=lambda: commits.append(projector.checkpoint)
    )
    assert commits == [s.seq for s in events[3::4]] + (
        [events[-1].seq] if len(events) % 4 else []
    ) + [position]
    assert _states(con) == _domain_fold(events)
    assert con.execute("SELECT seq FROM quarantine").fetchall() == [(position,)]


async def test_records_that_expired_unread_are_pruned_before_the_batch_past_them(
    store: EventStore, tmp_path: Path
) -> None:
    """A followed batch starting past checkpoint + 1 (one record expired before the projector
    read it) moves the first retained sequence there before applying the batch. (The stream
    denies purges, so the feed is the log's records with that one left out.)"""
    await _history(store, incidents=2, notes=2)
    events = await _log(store)
    last = events[-1].seq
    checkpoint = events[2].seq
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, store)
    projector.apply(events[:3], checkpoint)
    rest = events[4:]

    async def feed() -> AsyncIterator[Batch]:
        for n in range(0, len(rest), 2):
            piece = rest[n : n + 2]
            yield Batch(piece, piece[-1].seq, pending=last - piece[-1].seq, first_seq=piece[0].seq)

    await projector.project(feed())
    assert (projector.first_retained, projector.checkpoint) == (checkpoint + 2, last)
    seqs = [row[0] for row in con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    assert seqs == [s.seq for s in rest]


async def test_a_record_that_does_not_decode_is_kept_once_up_to_the_position(
    store: EventStore, tmp_path: Path
) -> None:
    """A quarantined record at the batch's last position is kept; delivered again with the
    next batch (at the checkpoint now) it is not kept twice, and the counts say so."""
    await _history(store, incidents=1, notes=3)
    events = await _log(store)
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, store)
    position = events[-1].seq + 1
    subject = f"incidents.{events[0].event.incident_id}.x"
    stray = Quarantined(position, subject, "not an event", b"junk")
    assert projector.apply(events, position, [stray]) == position
    assert (projector.quarantined, projector.quarantined_here) == (1, 1)
    assert projector.apply([], position + 1, [stray]) == position + 1
    assert (projector.quarantined, projector.quarantined_here) == (1, 1)
    assert con.execute("SELECT seq FROM quarantine").fetchall() == [(position,)]


async def test_a_position_already_reached_writes_nothing(store: EventStore, tmp_path: Path) -> None:
    await _history(store, incidents=1)
    events = await _log(store)
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, store)
    projector.apply(events, events[-1].seq)
    before = con.execute("SELECT seq, updated_at FROM checkpoint").fetchall()
    assert projector.apply(events, events[-1].seq) == events[-1].seq
    assert projector.apply(events[:1], events[0].seq) == events[-1].seq
    assert con.execute("SELECT seq, updated_at FROM checkpoint").fetchall() == before
    assert projector.projected == len(events)


async def test_waiting_for_a_position_never_reached_gives_up(
    store: EventStore, tmp_path: Path
) -> None:
    """Read-your-writes waits at most its timeout: the caller answers without the models."""
    projector = Projector(open_database(tmp_path / "live.duckdb"), store)
    waiting = asyncio.create_task(projector.wait(projector.checkpoint + 1, timeout=0.5))
    done, _ = await asyncio.wait({waiting}, timeout=60)
    if not done:
        waiting.cancel()
    assert done == {waiting}
    assert isinstance(waiting.exception(), TimeoutError)


def _sealed_log(*entries: tuple[type[Any], str, dict[str, Any]]) -> list[Stored]:
    """A log of (event type, incident, fields), each incident's events chained as the store
    chains them, at sequences 1, 2, ...: retention is driven by `prune`, as `retain` does."""
    chains: dict[str, str] = {}
    log: list[Stored] = []
    for n, (cls, incident_id, fields) in enumerate(entries, start=1):
        at = T0 + timedelta(minutes=n)
        common = {"actor": "carol@example.com", "source": Source.CLI, "occurred_at": at}
        event = cls(event_id=f"e{n}", incident_id=incident_id, **common, **fields)
        (sealed,) = seal([event], chains.get(incident_id, ""), at)
        chains[incident_id] = sealed.hash
        log.append(Stored(n, sealed, encode(sealed)))
    return log


def _declared(incident_id: str) -> tuple[type[Any], str, dict[str, Any]]:
    return IncidentDeclared, incident_id, {"title": "Checkout 5xx", "severity": Severity.P2}


def _noted(incident_id: str) -> tuple[type[Any], str, dict[str, Any]]:
    return IncidentNoteAdded, incident_id, {"text": "looking"}


def _models(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    partial = "SELECT * FROM partial_incidents ORDER BY incident_id"
    return snapshot(con) | {"partial_incidents": con.execute(partial).fetchall()}


def test_an_incident_declared_again_after_its_declaration_expired_is_whole_once_more(
    tmp_path: Path,
) -> None:
    """Both "a" and "b" lose their declarations to retention (partial incidents now); then "a" is
    declared again and "b" gets a note: "a" is a whole incident again, no longer partial, and
    "b" stays partial, as in a fresh fold of what the log still holds."""
    log = _sealed_log(
        _declared("a"), _declared("b"), _noted("a"), _noted("b"), _declared("a"), _noted("b")
    )
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, None)
    projector.apply(log[:4], 4)
    projector.prune(3)  # both declarations expire
    partial = "SELECT incident_id FROM partial_incidents ORDER BY incident_id"
    assert con.execute(partial).fetchall() == [("a",), ("b",)]
    projector.apply(log[4:], 6)
    fresh = open_database(tmp_path / "fresh.duckdb")
    Projector(fresh, None).apply(log[2:], 6)
    assert _models(con) == _models(fresh)
    assert con.execute(partial).fetchall() == [("b",)]
    assert [row[0] for row in _models(con)["incidents"]] == ["a"]


async def test_records_that_expired_unread_keep_the_heads_later_events_link_to(
    tmp_path: Path,
) -> None:
    """A followed batch past checkpoint + 1 prunes while the log holds more than the
    projector has seen: "a"'s expired head (its last event the projector had) is kept, as a
    later event of "a" may still be on its way, so the next retention record carries it and
    the retained log verifies. (Pruning forgets heads only once caught up with the log.)"""
    log = _sealed_log(
        _declared("a"),
        _noted("a"),
        _declared("b"),  # expires before the projector reads it
        _noted("b"),
        _noted("a"),  # links to "a"'s event 2
        _noted("b"),
        _noted("b"),
        _noted("b"),
    )
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, None)
    projector.apply(log[:2], 2)
    rest = log[3:]

    async def feed() -> AsyncIterator[Batch]:
        for n in range(0, len(rest), 2):
            piece = rest[n : n + 2]
            yield Batch(
                piece, piece[-1].seq, pending=len(log) - piece[-1].seq, first_seq=piece[0].seq
            )

    await asyncio.wait_for(projector.project(feed()), 60)
    assert (projector.first_retained, projector.checkpoint) == (4, len(log))
    record = projector.prune(5)  # b's event 4 expires, witnessed this time
    assert record is not None
    assert {i: h.seq for i, h in record.heads.items()} == {"a": 2, "b": 4}
    retained = [(s.seq, s.raw) for s in log[4:]]
    assert verify(retained, retention.chain_heads([record])) == []
