"""Schema version 7 (issue 15): `events` has no primary key; older files lose it once, with
every row kept, and go on projecting."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from events.chain import seal
from events.records import Stored
from events.schema import AnyEvent, IncidentDeclared, IncidentNoteAdded, Severity, Source, encode
from projections import schema
from projections.database import open_database
from projections.projector import Projector

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(incident_id: str, notes: int, first_seq: int) -> list[Stored]:
    events: list[AnyEvent] = [
        IncidentDeclared(
            event_id=f"{incident_id}-d",
            incident_id=incident_id,
            occurred_at=T0,
            actor="alice",
            source=Source.CLI,
            title="down",
            severity=Severity.P2,
        ),
        *(
            IncidentNoteAdded(
                event_id=f"{incident_id}-n{k}",
                incident_id=incident_id,
                occurred_at=T0 + timedelta(minutes=k),
                actor="alice",
                source=Source.CLI,
                text=f"note {k}",
            )
            for k in range(notes)
        ),
    ]
    sealed = seal(events, "", T0 + timedelta(hours=1))
    return [Stored(first_seq + i, e, encode(e)) for i, e in enumerate(sealed)]


def keyed(con: duckdb.DuckDBPyConnection) -> bool:
    [(found,)] = con.execute(
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE table_name = 'events' AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    return bool(found)


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute("SELECT * FROM events ORDER BY seq").fetchall()


def test_a_new_file_has_no_key_on_events() -> None:
    con = open_database(":memory:")
    Projector(con, None)
    assert not keyed(con)


def test_a_file_of_schema_6_loses_the_key_keeps_its_rows_and_projects_on(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = open_database(path)
    projector = Projector(con, None)
    first = history("INC-S1", 3, 1)
    projector.apply(first, first[-1].seq)
    before = rows(con)
    # As version 6 wrote it: the same table with `seq` as its primary key.
    con.execute("CREATE TABLE old_events AS SELECT * FROM events")
    con.execute("DROP TABLE events")
    keyed_ddl = schema.DDL.split("CREATE TABLE IF NOT EXISTS events (", 1)[1].split(");", 1)[0]
    con.execute(
        "CREATE TABLE events ("
        + keyed_ddl.replace("seq BIGINT NOT NULL", "seq BIGINT PRIMARY KEY")
        + ")"
    )
    con.execute("INSERT INTO events SELECT * FROM old_events")
    con.execute("DROP TABLE old_events")
    con.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    assert keyed(con)
    con.close()

    con = open_database(path)
    try:
        projector = Projector(con, None)  # opening it upgrades
        assert not keyed(con)
        assert rows(con) == before
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(schema.SCHEMA_VERSION),)
        later = history("INC-S2", 1, len(first) + 1)
        projector.apply(later, later[-1].seq)
        assert [r[0] for r in rows(con)] == list(range(1, len(first) + len(later) + 1))
        timeline = con.execute("SELECT count(*) FROM timeline WHERE incident_id = 'INC-S1'")
        assert timeline.fetchone() == (len(first),)
    finally:
        con.close()
