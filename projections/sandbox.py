"""Read-only SQL for auditors: one statement, in a read-only transaction, with row and time limits.

The database itself is opened sealed (no file or network access, no extension loading,
configuration locked: see `database.py`), so DuckDB refuses COPY, ATTACH, INSTALL/LOAD,
read_csv('/etc/passwd') and SET with its own reason; the read-only transaction refuses every
write. Statements that would leave that transaction are refused before they run.
"""

import threading
from typing import Any, Final

import duckdb
import msgspec

MAX_ROWS: Final = 10_000
TIMEOUT_S: Final = 10.0

# Transaction control could end the read-only transaction; the rest are housekeeping that
# has no place in an audit query.
_REFUSED_TYPES: Final = {
    duckdb.StatementType.TRANSACTION,
    duckdb.StatementType.DETACH,
    duckdb.StatementType.VACUUM,
}


class QueryError(ValueError):
    """The query was refused or failed; the message is DuckDB's reason where it gave one."""


class Result(msgspec.Struct, frozen=True):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int = MAX_ROWS,
    timeout_s: float = TIMEOUT_S,
) -> Result:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement (got {len(statements)})")
    if statements[0].type in _REFUSED_TYPES:
        raise QueryError(f"{statements[0].type.name} statements are not allowed here")
    cur = con.cursor()
    # interrupt() stops a query that runs past the limit; DuckDB then raises in execute().
    timer = threading.Timer(timeout_s, cur.interrupt)
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        timer.start()
        cur.execute(sql)
        columns = [d[0] for d in cur.description or []]
        rows = cur.fetchmany(max_rows + 1)
    except duckdb.InterruptException as exc:
        raise QueryError(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        timer.cancel()
        cur.close()  # closing rolls the read-only transaction back
    return Result(columns, [list(r) for r in rows[:max_rows]], len(rows) > max_rows)
