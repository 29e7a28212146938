"""What every fault test checks afterwards, whatever it did to the service.

- Every event a producer saw acknowledged (2xx) is in the log exactly once, no event id is stored
  twice, and every incident's hash chain verifies (`check_log`).
- The live read models equal a fresh fold of the log, row for row in every table the fold
  writes (`read_model_differences`).
- No valid request saw a 5xx other than 503 with `Retry-After` (`Outcomes.bad`).
"""

import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import httpx
import msgspec
import nats

from events.store import EventStore
from projections.rebuild import live_path, rebuild
from services.evidence import Log, verify_log
from services.evidence.log import is_event

# Tables a fold of the incident log does not write: `meta` says how the file was made (and holds
# the position of change records); deploy and config change records are projected by the
# service's own reader, not by a replay's fold (README "Replay").
NOT_FOLDED: Final = frozenset({"meta", "changes"})
# Columns that say when a row was written, not what the log says.
WALL_CLOCK: Final = {"checkpoint": "updated_at"}


class _EventId(msgspec.Struct):
    event_id: str = ""


_event_id: Final = msgspec.json.Decoder(_EventId)


@dataclass
class Outcomes:
    """What producers saw, from any number of threads or tasks."""

    acked: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answered(self, what: str, response: httpx.Response, event_ids: tuple[str, ...]) -> bool:
        """Tally one answer; True when it acknowledged `event_ids` (2xx)."""
        status = response.status_code
        with self._lock:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.acked.update(event_ids)
            elif status >= 500 and not (status == 503 and "retry-after" in response.headers):
                self.bad.append(f"{what}: {status} {response.text[:300]}")
        return 200 <= status < 300

    def failed(self, exc: Exception) -> None:
        """A request that got no answer (refused, reset, timed out): the producer retries."""
        with self._lock:
            self.transport_errors[type(exc).__name__] += 1

    def acknowledged(self, event_ids: tuple[str, ...]) -> None:
        """For producers whose answers are not HTTP (NATS intake replies)."""
        with self._lock:
            self.acked.update(event_ids)


@dataclass(frozen=True)
class LogCheck:
    events: int  # event records in the log
    acked: int
    missing: list[str]  # acknowledged, not in the log
    duplicates: dict[str, int]  # event id -> times stored (> 1)
    chain_breaks: list[str]
    gaps: list[str]

    def assert_sound(self) -> None:
        assert not self.missing, f"{len(self.missing)} acknowledged events lost: {self.missing[:5]}"
        twice = dict(list(self.duplicates.items())[:5])
        assert not self.duplicates, f"{len(self.duplicates)} stored more than once: {twice}"
        assert not self.chain_breaks, self.chain_breaks
        assert not self.gaps, self.gaps


async def check_log(nats_url: str, acked: set[str] | frozenset[str]) -> LogCheck:
    """Read the whole log: what is there, once, chained."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=5)
    try:
        log = Log(nc)
        report = await verify_log(log)
        state = await log.state()
        stored: Counter[str] = Counter()
        async for batch in log.records(state.first_seq, state.last_seq):
            for record in batch:
                if is_event(record):
                    stored[_event_id.decode(record.raw).event_id] += 1
    finally:
        await nc.close()
    return LogCheck(
        events=sum(stored.values()),
        acked=len(acked),
        missing=sorted(acked - stored.keys()),
        duplicates={i: n for i, n in stored.items() if n > 1},
        chain_breaks=[f"{b.incident_id} at {b.seq}: {b.reason}" for b in report.breaks],
        gaps=[f"{g.first_seq}..{g.last_seq}: {g.reason}" for g in report.missing],
    )


def served_models(data_dir: Path) -> Path:
    """The read-model file a (stopped) `incidents serve` on `data_dir` was answering from."""
    return live_path(data_dir)


def _checkpoint(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT seq FROM checkpoint").fetchone()
    return int(row[0]) if row else 0


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    names = [
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY table_name"
        ).fetchall()
        if name not in NOT_FOLDED
    ]

    # ORDER BY ALL: a total order over every column, whatever the table's key.
    def rows(name: str) -> list[tuple[object, ...]]:
        columns = f"* EXCLUDE ({WALL_CLOCK[name]})" if name in WALL_CLOCK else "*"
        return con.execute(f'SELECT {columns} FROM "{name}" ORDER BY ALL').fetchall()

    return {name: rows(name) for name in names}


async def read_model_differences(nats_url: str, live: Path, scratch_dir: Path) -> list[str]:
    """A fresh fold of the log, up to the live file's checkpoint, against the live file.

    The live file must not be open in a running service (DuckDB locks it). Empty: equal.
    """
    until = _checkpoint(live)
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=5)
    try:
        with tempfile.TemporaryDirectory(dir=scratch_dir) as scratch:
            fresh = Path(scratch) / "fresh.duckdb"
            await rebuild(EventStore(nc), fresh, until_seq=until)
            with duckdb.connect(str(fresh), read_only=True) as con:
                expected = _tables(con)
    finally:
        await nc.close()
    with duckdb.connect(str(live), read_only=True) as con:
        actual = _tables(con)
    found: list[str] = []
    for table in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(table), actual.get(table)
        if want is None or got is None:
            found.append(f"{table}: only in the {'live' if want is None else 'fresh'} models")
        elif want != got:
            extra = [r for r in got if r not in want][:3]
            lacking = [r for r in want if r not in got][:3]
            found.append(
                f"{table}: {len(got)} live rows vs {len(want)} fresh; "
                f"only live {extra}; only fresh {lacking}"
            )
    return found
