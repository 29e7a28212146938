"""projections.projector against a real nats-server and real DuckDB files: the promises
mutation testing (`uv run mutmut run`, issue 16) found no test pinning.

The fold-equality tests compare the projector with itself (a fresh fold runs the same code),
so these check against the domain's own fold and against plain counts instead.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import msgspec
import pytest
from tests_support import declare, note, snapshot

from events.incident import Incident, fold
from events.records import Batch, Quarantined, Stored
from events.store import EventStore
from events.subjects import new_incident_id
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
