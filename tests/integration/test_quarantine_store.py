"""The log's readers carry undecodable records as quarantined instead of raising (issue 11.1):
writers fold past them, projectors keep them in a `quarantine` table that retention prunes
like everything else, and files of older schema versions get that table."""

from pathlib import Path

import pytest
from tests_support import declare, note, snapshot

from events.store import EventStore
from projections import schema
from projections.database import open_database
from projections.projector import Projector
from services.write.handler import Accepted, CommandHandler

GARBAGE = b"\x00\x01 not an event"


async def test_writers_and_readers_carry_on_past_an_undecodable_record(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    handler = CommandHandler(store)
    assert isinstance(await handler.handle(declare("INC-Q1")), Accepted)
    ack = await store.nc.jetstream().publish("incidents.INC-Q1.note_added", GARBAGE)

    loaded = await store.load("INC-Q1")
    assert [s.event.event_id for s in loaded.events] == ["decl-INC-Q1"]
    # Writers expect the incident's last record, quarantined or not, or appends would conflict.
    assert loaded.last_seq == ack.seq
    assert [s.seq async for batch in store.read() for s in batch] == [1]

    accepted = await handler.handle(note("INC-Q1", "n-1"))
    assert isinstance(accepted, Accepted)
    assert [a.seq for a in accepted.events] == [ack.seq + 1]
    assert [s.seq for s in (await store.load("INC-Q1")).events] == [1, ack.seq + 1]


def test_a_file_of_schema_version_2_gets_the_quarantine_table(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = open_database(path)
    Projector(con, None)
    con.execute("DROP TABLE IF EXISTS quarantine")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.close()

    con = open_database(path)
    try:
        Projector(con, None)
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(schema.SCHEMA_VERSION),)
        assert schema.SCHEMA_VERSION >= 3
    finally:
        con.close()


def test_quarantined_records_expire_with_the_log() -> None:
    from events.records import Quarantined

    con = open_database(":memory:")
    projector = Projector(con, None)
    strays = [
        Quarantined(seq, "incidents.INC-X.note_added", "malformed", GARBAGE) for seq in (2, 5)
    ]
    projector.apply([], 6, strays)
    assert projector.quarantined == 2
    projector.prune(4)
    rows = con.execute("SELECT seq, subject, reason, raw FROM quarantine").fetchall()
    assert rows == [(5, "incidents.INC-X.note_added", "malformed", GARBAGE)]
    assert projector.quarantined == 1
    # Records at or below the checkpoint are not quarantined twice.
    projector.apply([], 6, strays)
    assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)


async def test_a_quarantined_record_this_version_decodes_is_folded_in(
    store: EventStore, tmp_path: Path
) -> None:
    """A replica of an older version quarantined a type it did not know; once upgraded, the read
    models hold it as a fresh replay by this version would (projections == fold(log))."""
    from events.records import Quarantined

    handler = CommandHandler(store)
    for command in (declare("INC-Q2"), note("INC-Q2", "n-1", "newer type"), note("INC-Q2", "n-2")):
        assert isinstance(await handler.handle(command), Accepted)
    log = [s async for batch in store.read() for s in batch]
    unknown = log[1]
    path = tmp_path / "old.duckdb"
    con = open_database(path)
    older = Projector(con, None)
    older.apply([log[0]], log[0].seq)
    stray = Quarantined(unknown.seq, "incidents.INC-Q2.note_added", "unknown type", unknown.raw)
    older.apply([log[2]], log[2].seq, [stray])
    assert older.quarantined == 1
    con.close()

    con = open_database(path)
    fresh = open_database(":memory:")
    try:
        upgraded = Projector(con, None)
        assert upgraded.quarantined == 0
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
        Projector(fresh, None).apply(log, log[-1].seq)
        assert snapshot(con) == snapshot(fresh)
    finally:
        con.close()
        fresh.close()
