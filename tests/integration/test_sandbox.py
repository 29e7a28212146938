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
        ("COPY events TO '/tmp/stolen.csv'", "file system operations are disabled"),
        ("ATTACH '/tmp/other.duckdb' AS other", "file system operations are disabled"),
        ("INSTALL httpfs", "disabled"),
        ("LOAD httpfs", "disabled"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_json('http://169.254.169.254/latest')", "disabled"),
        ("SET enable_external_access = true", "configuration has been locked"),
        ("SET threads = 1", "configuration has been locked"),
        ("INSERT INTO meta VALUES ('x', 'y')", "read-only mode"),
        ("UPDATE checkpoint SET seq = 99", "read-only mode"),
        ("DELETE FROM events", "read-only mode"),
        ("DROP TABLE events", "read-only mode"),
        ("CREATE TABLE loot AS SELECT 1", "read-only mode"),
        ("SELECT getenv('HOME')", "getenv"),
        ("COMMIT", "TRANSACTION statements are not allowed"),
        ("SELECT 1; INSERT INTO meta VALUES ('x', 'y')", "exactly one statement"),
        ("SELEKT 1", "syntax error"),
    ],
)
def test_refused_with_duckdbs_reason(con: duckdb.DuckDBPyConnection, sql: str, reason: str) -> None:
    with pytest.raises(sandbox.QueryError) as refused:
        sandbox.run(con, sql)
    assert reason.lower() in str(refused.value).lower()
    assert con.execute("SELECT count(*) FROM meta").fetchone() == (1,)
    assert con.execute("SELECT seq FROM checkpoint").fetchone() == (0,)
    assert not Path("/tmp/stolen.csv").exists()
