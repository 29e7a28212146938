"""Change records (PagerDuty change events) against a real nats-server and DuckDB: stored
outside incidents, once per change, followed by the projector with a position of its own,
quarantined when they do not decode, aged out with the log; older streams gain the subject."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import nats
import pytest
from nats.aio.client import Client as NATS
from tests_support import declare, note

from events import changes as records
from events.schema import Principal, Source
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream, stream_config
from events.subjects import STREAM_SUBJECTS
from projections import changes
from projections.database import open_database
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.tasks import stop
from services.auth import LOCAL
from services.write.correlation import Correlator
from services.write.handler import CommandHandler
from services.write.intake import Intake

ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"
T0 = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
GARBAGE = b"\x00 not a change"


def change_body(summary: str, at: datetime | None = T0, routing_key: str = ROUTING_KEY) -> bytes:
    payload: dict[str, Any] = {"summary": summary, "source": "ci.example.invalid"}
    if at is not None:
        payload["timestamp"] = at.isoformat()
    return json.dumps({"routing_key": routing_key, "payload": payload}).encode()


def record(summary: str, n: int, at: datetime = T0) -> records.ChangeRecorded:
    return records.ChangeRecorded(
        change_id=f"~change-{n:032x}",
        sender="a" * 32,
        occurred_at=at,
        recorded_at=at,
        actor="pagerduty",
        source=Source.PAGERDUTY,
        principal=Principal(name="local", role="admin"),
        summary=summary,
    )


async def put(store: EventStore, change: records.ChangeRecorded) -> int:
    data = records.encode(change)
    return await store.put_if_last(records.subject(change), data, 0, change.change_id)


def intake_of(store: EventStore) -> Intake:
    handler = CommandHandler(store)
    return Intake(handler, Correlator(store, handler))


def summaries(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [str(r[0]) for r in con.execute("SELECT summary FROM changes ORDER BY seq").fetchall()]


async def until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def short_window(nats_url: str) -> AsyncIterator[EventStore]:
    """A log whose duplicate window is one second: what a retry looks like after it passed."""
    client = await nats.connect(nats_url)
    await ensure_stream(client, StreamSettings(duplicate_window_s=1.0))
    try:
        yield EventStore(client)
    finally:
        await client.close()


async def test_a_change_is_stored_once_per_delivery_outside_incidents(store: EventStore) -> None:
    intake = intake_of(store)
    first = await intake.change(change_body("Deployed v1.8.3"), T0 + timedelta(minutes=1), LOCAL)
    again = await intake.change(change_body("Deployed v1.8.3"), T0 + timedelta(minutes=2), LOCAL)
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    stored = await store.records("changes.>")
    assert [seq for seq, _ in stored] == [first.seq]
    change = records.decode(stored[0][1])
    assert change.occurred_at == T0 and change.principal.name == "local"
    assert ROUTING_KEY.encode() not in stored[0][1]
    assert [s async for batch in store.read() for s in batch] == []  # no incident event
    # Another sender's identical change is another change.
    other = await intake.change(change_body("Deployed v1.8.3", routing_key="0" * 32), T0, LOCAL)
    assert not other.duplicate and other.seq > first.seq


async def test_racing_identical_deliveries_store_one_change(store: EventStore) -> None:
    intake = intake_of(store)
    stored = await asyncio.gather(
        *(intake.change(change_body("Config push"), T0, LOCAL) for _ in range(6))
    )
    assert len({s.seq for s in stored}) == 1
    assert sum(not s.duplicate for s in stored) == 1
    assert len(await store.records("changes.>")) == 1


async def test_a_timestamped_change_is_recognised_after_the_duplicate_window(
    short_window: EventStore,
) -> None:
    """A change that names its time is the same change whenever it comes again; one without a
    time is only recognised inside the window (the same announcement later is a new change)."""
    intake = intake_of(short_window)
    timed = await intake.change(change_body("Deployed v2"), T0, LOCAL)
    untimed = await intake.change(change_body("Cache flushed", at=None), T0, LOCAL)
    assert (await intake.change(change_body("Cache flushed", at=None), T0, LOCAL)).duplicate
    await asyncio.sleep(1.5)
    late = await intake.change(change_body("Deployed v2"), T0 + timedelta(hours=1), LOCAL)
    assert late.duplicate and late.seq == timed.seq
    again = await intake.change(change_body("Cache flushed", at=None), T0, LOCAL)
    assert not again.duplicate and again.seq > untimed.seq


async def test_an_existing_stream_gains_the_changes_subject(nc: NATS) -> None:
    """A data dir of an older version: its stream lacks `changes.>` until the next start."""
    settings = StreamSettings()
    before = stream_config(settings)
    before.subjects = [s for s in STREAM_SUBJECTS if not s.startswith("changes")]
    js = nc.jetstream()
    await js.add_stream(before)
    old = await js.publish("incidents.INC-OLD.incident.declared", b"{}")
    changed = await ensure_stream(nc, settings)
    assert "subjects" in changed
    info = await js.stream_info(settings.name)
    assert sorted(info.config.subjects or []) == sorted(STREAM_SUBJECTS)
    assert info.state.first_seq == old.seq and info.state.last_seq == old.seq  # kept
    store = EventStore(nc)
    assert await put(store, record("after the upgrade", 1)) == old.seq + 1
    assert await ensure_stream(nc, settings) == {}


async def test_the_projector_follows_changes_with_its_own_position(
    store: EventStore, tmp_path: Path
) -> None:
    handler = CommandHandler(store)
    await handler.handle(declare("INC-C1"))
    await put(store, record("deploy one", 1))
    await store.nc.jetstream().publish("changes.stray.x", GARBAGE)
    await handler.handle(note("INC-C1", "n-1"))
    await put(store, record("deploy two", 2))

    path = tmp_path / "models.duckdb"
    con = open_database(path)
    projector = Projector(con, store)
    running = asyncio.create_task(projector.run())
    try:
        last = await store.last_seq()
        await until(lambda: projector.changes_seq == last and projector.checkpoint == last)
        assert summaries(con) == ["deploy one", "deploy two"]
        assert con.execute("SELECT count(*) FROM events").fetchone() == (2,)
        quarantined = con.execute("SELECT seq, subject, raw FROM quarantine").fetchall()
        assert [(subject, bytes(raw)) for _, subject, raw in quarantined] == [
            ("changes.stray.x", GARBAGE)
        ]
        assert projector.quarantined == 1
        # Live: a new change arrives while it follows.
        seq = await put(store, record("deploy three", 3))
        await until(lambda: projector.changes_seq == seq)
        assert summaries(con)[-1] == "deploy three"
    finally:
        await stop(running)
        con.close()

    # A restart resumes from its positions: nothing twice, nothing lost.
    con = open_database(path)
    try:
        again = Projector(con, store)
        assert again.changes_seq == seq and again.quarantined == 1
        assert again.apply_changes([(s, "changes.a.b", b"{}") for s in range(1, seq + 1)]) == seq
        assert summaries(con) == ["deploy one", "deploy two", "deploy three"]
        assert changes.between(con.cursor(), T0, T0)[0]["summary"] == "deploy one"
    finally:
        con.close()


async def test_a_rebuilt_file_catches_up_with_changes_once_it_runs(
    store: EventStore, tmp_path: Path
) -> None:
    await CommandHandler(store).handle(declare("INC-C2"))
    await put(store, record("before the replay", 1))
    path = tmp_path / "rebuilt.duckdb"
    await rebuild(store, path)
    con = open_database(path)
    projector = Projector(con, store)
    running = asyncio.create_task(projector.run())
    try:
        await until(lambda: projector.changes_seq > 0)
        assert summaries(con) == ["before the replay"]
    finally:
        await stop(running)
        con.close()


def test_changes_age_out_with_the_log_and_quarantined_ones_are_released() -> None:
    con = open_database(":memory:")
    projector = Projector(con, None)
    raw = [records.encode(record(f"c{n}", n, T0 + timedelta(minutes=n))) for n in range(1, 4)]
    projector.apply_changes([(2, "changes.a.1", raw[0]), (5, "changes.a.2", raw[1])])
    projector.apply([], 6)
    projector.prune(4)
    assert summaries(con) == ["c2"]
    # Quarantined by an older version that could not read it: this one folds it in.
    con.execute("INSERT INTO quarantine VALUES (7, 'changes.a.3', 'unknown', ?)", [raw[2]])
    con.execute("INSERT INTO quarantine VALUES (8, 'changes.a.4', 'unknown', ?)", [GARBAGE])
    again = Projector(con, None)
    assert summaries(con) == ["c2", "c3"]
    assert again.quarantined == 1


def test_changes_before_detection_are_the_hour_before_it() -> None:
    con = open_database(":memory:")
    projector = Projector(con, None)
    offsets = [-90, -60, -30, 0, 5]
    found = [
        (n + 1, "changes.a.b", records.encode(record(f"at {m}", n, T0 + timedelta(minutes=m))))
        for n, m in enumerate(offsets)
    ]
    projector.apply_changes(found)
    cur = con.cursor()
    before = changes.before(cur, T0)
    assert [c["summary"] for c in before] == ["at -60", "at -30", "at 0"]
    assert before[0]["links"] == [] and before[0]["source"] == "pagerduty"
    assert changes.before(cur, None) == []
    assert changes.before(cur, T0, as_of=T0 - timedelta(minutes=45)) == [before[0]]
    assert [c["summary"] for c in changes.between(cur, T0, None)] == ["at 0", "at 5"]
    assert len(changes.between(cur, limit=2)) == 2
