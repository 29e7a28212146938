"""The auditors' SQL sandbox: reads work; writes, files, network, extensions and SET do not."""

from pathlib import Path

import duckdb
import pytest

from projections import sandbox
from projections.database import open_database
from projections.schema import create


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = open_database(tmp_path / "db.duckdb")
    create(connection)
    return connection


def test_a_select_answers_columns_and_rows(con: duckdb.DuckDBPyConnection) -> None:
    result = sandbox.run(con, "SELECT seq, key FROM checkpoint, meta ORDER BY key")
    assert result.columns == ["seq", "key"]
    assert result.rows == [[0, "schema_version"]]
    assert result.truncated is False


def test_row_limit_truncates(con: duckdb.DuckDBPyConnection) -> None:
    result = sandbox.run(con, "SELECT * FROM range(25)", max_rows=10)
    assert len(result.rows) == 10 and result.truncated


def test_time_limit_stops_a_runaway_query(con: duckdb.DuckDBPyConnection) -> None:
    slow = "SELECT count(*) FROM range(100000000000) a"
    with pytest.raises(sandbox.QueryError, match="longer than"):
        sandbox.run(con, slow, timeout_s=0.3)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("COPY events TO '/tmp/stolen.csv'", "COPY statements are not allowed"),
        ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH statements are not allowed"),
        ("INSTALL httpfs", "statements are not allowed"),
        ("LOAD httpfs", "LOAD statements are not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
        ("SELECT * FROM read_json('http://169.254.169.254/latest')", "is not allowed"),
        ("SELECT * FROM 'events.csv'", "is not a table of the read models"),
        ("SET enable_external_access = true", "SET statements are not allowed"),
        ("SET threads = 1", "SET statements are not allowed"),
        ("INSERT INTO meta VALUES ('x', 'y')", "INSERT statements are not allowed"),
        ("UPDATE checkpoint SET seq = 99", "UPDATE statements are not allowed"),
        ("DELETE FROM events", "DELETE statements are not allowed"),
        ("DROP TABLE events", "DROP statements are not allowed"),
        ("CREATE TABLE loot AS SELECT 1", "CREATE statements are not allowed"),
        ("CREATE TEMP TABLE loot AS SELECT 1", "CREATE statements are not allowed"),
        ("FORCE CHECKPOINT", "statements are not allowed"),
        ("PRAGMA database_list", "PRAGMA statements are not allowed"),
        ("SELECT * FROM force_checkpoint()", "is not allowed"),
        ("SELECT getenv('HOME')", "getenv() is not allowed"),
        ("SELECT current_setting('temp_directory')", "current_setting() is not allowed"),
        ("SELECT nextval('x')", "nextval() is not allowed"),
        ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
        ("SELECT * FROM duckdb_databases", "is not a table of the read models"),
        ("WITH duckdb_databases AS (SELECT 1) SELECT 1", "may not be named like a system view"),
        ("COMMIT", "TRANSACTION statements are not allowed"),
        ("SELECT 1; INSERT INTO meta VALUES ('x', 'y')", "exactly one statement"),
        ("SELEKT 1", "syntax error"),
    ],
)
def test_refused_with_the_reason(con: duckdb.DuckDBPyConnection, sql: str, reason: str) -> None:
    with pytest.raises(sandbox.QueryError) as refused:
        sandbox.run(con, sql)
    assert reason.lower() in str(refused.value).lower()
    assert con.execute("SELECT count(*) FROM meta").fetchone() == (1,)
    assert con.execute("SELECT seq FROM checkpoint").fetchone() == (0,)
    assert not Path("/tmp/stolen.csv").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "DESCRIBE events",
        "SHOW TABLES",
        "SUMMARIZE incidents",
        "WITH e AS (SELECT * FROM events) SELECT count(*) FROM e",
        "FROM main.timeline",
        "SELECT current_setting('TimeZone')",
        "SELECT * FROM generate_series(1, 3) JOIN range(3) r(i) ON true",
        "VALUES (1, 'a')",
    ],
)
def test_reads_of_the_read_models_run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    sandbox.run(con, sql)


def test_byte_limit_truncates(con: duckdb.DuckDBPyConnection) -> None:
    result = sandbox.run(con, "SELECT repeat('x', 1000) FROM range(100)", max_bytes=10_000)
    assert result.truncated
    assert 0 < len(result.rows) < 10
    assert len(sandbox.encode(result)) <= 10_000


def test_memory_limit_stops_a_hungry_query(con: duckdb.DuckDBPyConnection) -> None:
    hungry = "SELECT length(list(i)) FROM range(100000000) t(i)"
    with pytest.raises(sandbox.QueryError, match="memory"):
        sandbox.run(con, hungry, max_memory=64 * 2**20)
    assert sandbox.run(con, "SELECT 1").rows == [[1]]


def test_error_messages_name_no_path() -> None:
    message = "IO Error: could not write /srv/var/incidents.duckdb.tmp/duckdb_temp_1 (a/b)"
    assert sandbox.scrubbed(message) == "IO Error: could not write <path> (a/b)"
