"""Read-only SQL for auditors: one SELECT over the read models, bounded in rows, bytes, memory
and time. It can never write, read a file, reach the network, show where the server keeps its
files, or hold up the projector.

1. Statement type, by DuckDB's own parser (`extract_statements`): exactly one statement, and it
   must be a SELECT (to DuckDB, so are WITH, VALUES, FROM-first, DESCRIBE, SHOW, SUMMARIZE).
   CREATE [TEMP] TABLE, CHECKPOINT, PRAGMA, SET, ATTACH, COPY, INSTALL/LOAD, EXPORT, CALL,
   transactions... are refused before they run.
2. What the SELECT names, by DuckDB's own parse tree (`json_serialize_sql`): tables and views
   must be the read models' own (or the statement's CTEs), table functions `range`,
   `generate_series` or `unnest`, and functions that read settings or variables, touch
   sequences, sleep or log are refused. So the catalog (`duckdb_settings()`,
   `duckdb_databases`, `pragma_*`, `information_schema`...) stays out of reach, and no answer
   or error shows a server path (error messages are scrubbed of paths too).
3. It runs in a read-only transaction, on a cursor of the sealed database (`database.py`: no
   file or network access, no extension loading, configuration locked).
4. Limits: `TIMEOUT_S` of run time and `MAX_MEMORY_BYTES` of growth of the process while it
   runs (a watchdog interrupts the query), `MAX_ROWS` rows and `MAX_BYTES` of JSON answer
   (`truncated` says an answer was cut). Rows are fetched and encoded here, in the caller's
   worker thread, a chunk at a time: the event loop only sends the finished bytes.
"""

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import duckdb
import msgspec

MAX_ROWS: Final = 10_000
MAX_BYTES: Final = 8 * 1024 * 1024  # of JSON answer
MAX_MEMORY_BYTES: Final = 1024 * 1024 * 1024  # process growth while one query runs
TIMEOUT_S: Final = 10.0
CONCURRENT: Final = 1  # queries at a time per service (the memory limit assumes one)

_FETCH_ROWS: Final = 256
_WATCH_EVERY_S: Final = 0.02

_TABLE_FUNCTIONS: Final = frozenset({"range", "generate_series", "unnest"})
_REFUSED_FUNCTIONS: Final = frozenset(
    {
        "current_setting",  # but see _SETTINGS
        "getvariable",
        "getenv",
        "nextval",
        "currval",
        "setseed",
        "sleep_ms",
        "pg_sleep",
        "write_log",
        "which_secret",
        "json_execute_serialized_sql",
    }
)
_REFUSED_PREFIXES: Final = ("duckdb_", "pragma_")
_SETTINGS: Final = frozenset({"timezone", "calendar"})  # current_setting() may read these
# SHOW TABLES, SHOW ALL TABLES (and bare DESCRIBE), SHOW DATABASES: names only.
_SHOW_SPECIAL: Final = frozenset({'"tables"', "__show_tables_expanded", '"databases"'})

_CATALOG: Final = """
SELECT lower(table_name), database_name = current_database() AND schema_name = 'main'
       AND NOT temporary
FROM duckdb_tables()
UNION ALL
SELECT lower(view_name), database_name = current_database() AND schema_name = 'main'
       AND NOT internal
FROM duckdb_views()
"""
_PATH: Final = re.compile(r"(?<![\w.~])/[^\s'\"/]+(?:/[^\s'\"/]*)+")


class QueryError(ValueError):
    """The query was refused or failed; the message says why (DuckDB's reason where it gave one)."""


class Result(msgspec.Struct, frozen=True):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def _fallback(value: Any) -> str:
    return str(value)


_encoder: Final = msgspec.json.Encoder(enc_hook=_fallback)


def encode(result: Result) -> bytes:
    return _encoder.encode(result)


def answer(con: duckdb.DuckDBPyConnection, sql: str, **limits: Any) -> bytes:
    """`run`, encoded as the JSON answer (in the calling thread: keep it off the event loop)."""
    return encode(run(con, sql, **limits))


def run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int = MAX_ROWS,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
    max_memory: int = MAX_MEMORY_BYTES,
) -> Result:
    cur = con.cursor()
    try:
        _checked(cur, sql)
        with _watched(cur, timeout_s, max_memory) as watch:
            try:
                cur.execute("BEGIN TRANSACTION READ ONLY")
                cur.execute(sql)
                columns = [d[0] for d in cur.description or []]
                rows, truncated = _fetch(cur, columns, max_rows, max_bytes, watch)
            except duckdb.InterruptException as exc:
                raise QueryError(watch.reason or "the query was interrupted") from exc
            except duckdb.OutOfMemoryException as exc:
                raise QueryError(f"the query needs more memory than it may use: {exc}") from exc
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc
            if watch.reason is not None:
                raise QueryError(watch.reason)
    except QueryError as exc:
        raise QueryError(scrubbed(str(exc))) from exc.__cause__
    finally:
        cur.close()  # closing rolls the read-only transaction back
    return Result(columns, rows, truncated)


def scrubbed(message: str) -> str:
    """`message` without file system paths (DuckDB names its files and directories)."""
    return _PATH.sub("<path>", message)


def _fetch(
    cur: duckdb.DuckDBPyConnection,
    columns: list[str],
    max_rows: int,
    max_bytes: int,
    watch: "_Watch",
) -> tuple[list[list[Any]], bool]:
    """Rows until the answer would pass `max_rows` or `max_bytes`; (rows, truncated)."""
    size = len(_encoder.encode(Result(columns, [], truncated=True)))
    rows: list[list[Any]] = []
    while watch.reason is None:
        chunk = cur.fetchmany(min(_FETCH_ROWS, max_rows + 1 - len(rows)))
        if not chunk:
            return rows, False
        for row in chunk:
            values = list(row)
            try:
                encoded = _encoder.encode(values)
            except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
                values = [None if v is None else str(v) for v in values]  # as text, not a 500
                encoded = _encoder.encode(values)
            size += len(encoded) + 1
            if len(rows) == max_rows or size > max_bytes:
                return rows, True
            rows.append(values)
    return rows, False  # the watchdog stopped it: the caller raises its reason


class _Watch:
    def __init__(self) -> None:
        self.reason: str | None = None


@contextmanager
def _watched(cur: duckdb.DuckDBPyConnection, timeout_s: float, max_memory: int) -> Iterator[_Watch]:
    """Interrupts `cur` once the query runs past `timeout_s` or the process grows by more
    than `max_memory` bytes; `reason` then says which."""
    watch, done = _Watch(), threading.Event()
    baseline = _resident_bytes()
    deadline = time.monotonic() + timeout_s

    def patrol() -> None:
        while not done.wait(_WATCH_EVERY_S):
            if time.monotonic() > deadline:
                watch.reason = f"the query ran longer than {timeout_s:g} s and was stopped"
            else:
                resident = _resident_bytes()
                if baseline is None or resident is None or resident - baseline <= max_memory:
                    continue
                watch.reason = (
                    f"the query used more than {max_memory // 2**20} MiB of memory and was "
                    "stopped: aggregate more, or select fewer or smaller rows"
                )
            cur.interrupt()
            return

    watchdog = threading.Thread(target=patrol, name="sql-sandbox-watch", daemon=True)
    watchdog.start()
    try:
        yield watch
    finally:
        done.set()
        watchdog.join()


def _resident_bytes() -> int | None:
    """This process's resident memory (Linux); None where /proc does not say."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- what a statement may be and name ------------------------------------------------------


def check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse `sql` (QueryError) unless it is one SELECT naming only what auditors may read.

    `run` checks too; this is for refusing at once, without waiting for a turn to run."""
    cur = con.cursor()
    try:
        _checked(cur, sql)
    except QueryError as exc:
        raise QueryError(scrubbed(str(exc))) from exc.__cause__
    finally:
        cur.close()


def _checked(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement (got {len(statements)})")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(
            f"{kind.name} statements are not allowed: queries here are read-only, SELECT only"
        )
    try:
        [(serialized,)] = cur.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()
        catalog = cur.execute(_CATALOG).fetchall()
        [(database,)] = cur.execute("SELECT current_database()").fetchall()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    tree = msgspec.json.decode(serialized)
    if tree.get("error"):
        raise QueryError(f"the statement cannot be checked: {tree.get('error_message')}")
    readable: set[str] = set()
    known: set[str] = set()
    for name, ours in catalog:
        (readable if ours else known).add(name)
    _Names(readable, known - readable, str(database).lower()).check(tree["statements"])


class _Names:
    """Walks a parse tree; refuses any table, table function or function out of bounds."""

    def __init__(self, readable: set[str], system: set[str], database: str) -> None:
        self.readable = readable
        self.system = system
        self.database = database

    def check(self, tree: Any) -> None:
        nodes = list(_nodes(tree))
        ctes = {str(e["key"]).lower() for n in nodes for e in n.get("cte_map", {}).get("map", [])}
        shadowing = ctes & self.system
        if shadowing:
            raise QueryError(f"a CTE may not be named like a system view: {sorted(shadowing)}")
        for node in nodes:
            kind = node.get("type")
            if kind == "BASE_TABLE":
                self._table(node, ctes)
            elif kind == "TABLE_FUNCTION":
                name = str(node.get("function", {}).get("function_name", "")).lower()
                if name not in _TABLE_FUNCTIONS:
                    allowed = ", ".join(sorted(_TABLE_FUNCTIONS))
                    raise QueryError(f"table function {name}() is not allowed (only {allowed})")
            elif kind == "SHOW_REF" and node.get("query") is None:
                name = str(node.get("table_name", "")).lower()
                if name not in _SHOW_SPECIAL and name not in self.readable:
                    raise QueryError(f"SHOW {name} is not allowed here")
            if "function_name" in node:
                _function(node)

    def _table(self, node: dict[str, Any], ctes: set[str]) -> None:
        name = str(node.get("table_name", "")).lower()
        schema = str(node.get("schema_name", "")).lower()
        catalog = str(node.get("catalog_name", "")).lower()
        qualified = ".".join(p for p in (catalog, schema, name) if p)
        ours = catalog in ("", self.database) and schema in ("", "main")
        if ours and (name in self.readable or (not catalog and not schema and name in ctes)):
            return
        tables = ", ".join(sorted(self.readable))
        raise QueryError(f"{qualified} is not a table of the read models (they are: {tables})")


def _function(node: dict[str, Any]) -> None:
    name = str(node["function_name"]).lower()
    if name == "current_setting" and _constant_argument(node).lower() in _SETTINGS:
        return
    if name in _REFUSED_FUNCTIONS or name.startswith(_REFUSED_PREFIXES):
        raise QueryError(f"function {name}() is not allowed here")


def _constant_argument(node: dict[str, Any]) -> str:
    """The first argument of a function call when it is a string constant, else ''."""
    arguments = node.get("arguments") or node.get("children") or []
    first = arguments[0] if arguments else {}
    expression = first.get("expression", first) if isinstance(first, dict) else {}
    literal = expression.get("literal") if isinstance(expression, dict) else None
    if isinstance(literal, dict) and literal.get("kind") == "STRING":
        return str(literal.get("text", ""))
    return ""


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every object in a parse tree, iteratively (a deep tree must not exhaust the stack)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
