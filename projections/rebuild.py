"""Replay: rebuild the read models from the log into a shadow file, and compare two builds.

Read models live in generations: `<data>/readmodels/incidents-<n>.duckdb`, with
`<data>/incidents.duckdb` a symlink to the current one. A rebuild fills
`readmodels/incidents-next.duckdb` (resumable: it has its own checkpoint) and is then promoted
by renaming it to the next generation and switching the symlink atomically. Each generation is
opened by its real path, so its write-ahead log is its own.
"""

import asyncio
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import duckdb
import msgspec

from events.crash_points import reached as crash_point
from events.store import EventStore
from projections.database import open_database
from projections.memory import DEFAULT_MEMORY_LIMIT
from projections.projector import BATCH_RECORDS, Projector

CURRENT: Final = "incidents.duckdb"
GENERATIONS: Final = "readmodels"
NEXT: Final = "incidents-next.duckdb"
_GENERATION: Final = re.compile(r"incidents-(\d+)\.duckdb")

# Rows compared by --verify, each table by its key.
COMPARED: Final = {
    "events": "seq",
    "incidents": "incident_id",
    "alerts": "incident_id, fingerprint",
    "action_items": "incident_id, position",
    "partial_incidents": "incident_id",
    "quarantine": "seq",
}


class Progress(msgspec.Struct):
    """How far a rebuild got; sequences, so the total is known before the first event."""

    start_seq: int
    target_seq: int
    done_seq: int
    started: float = msgspec.field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        span = self.target_seq - self.start_seq
        return 1.0 if span <= 0 else (self.done_seq - self.start_seq) / span

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done_seq - self.start_seq) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.target_seq - self.done_seq) / rate if rate > 0 else None


def live_path(data_dir: Path) -> Path:
    """The current generation's real file (what the service opens)."""
    return (data_dir / CURRENT).resolve()


def next_path(data_dir: Path) -> Path:
    return data_dir / GENERATIONS / NEXT


async def rebuild(
    store: EventStore,
    path: Path,
    until_seq: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    batch_size: int = BATCH_RECORDS,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> int:
    """Fold the log into `path` from its own checkpoint to `until_seq` (default: the end now)."""

    def progressed(progress: Progress) -> None:
        if progress.done_seq > progress.start_seq:
            crash_point("during_build")  # batches committed, the build neither done nor promoted
        if on_progress:
            on_progress(progress)

    con = open_database(path, memory_limit)
    try:
        projector = Projector(con, None)
        target = await store.last_seq() if until_seq is None else until_seq
        await catch_up(store, projector, target, progressed, batch_size)
        con.execute("CHECKPOINT")
        return projector.checkpoint
    finally:
        con.close()


async def catch_up(
    store: EventStore,
    projector: Projector,
    target: int,
    on_progress: Callable[[Progress], None] | None = None,
    batch_size: int = BATCH_RECORDS,
) -> None:
    """Fold the log into `projector` from its checkpoint to `target`, quarantining the records
    that do not decode as live projection does."""
    progress = Progress(projector.checkpoint, target, projector.checkpoint)

    def applied() -> None:
        progress.done_seq = projector.checkpoint
        if on_progress:
            on_progress(progress)

    if projector.checkpoint < target:
        start = projector.checkpoint + 1
        # Read ahead in bounded batches (`events.follow`), never the whole log in memory.
        batches = store.scan(start, target, batch_size=batch_size)
        await projector.project(batches, following=False, applied=applied)
        # Service records after the last incident record still count for the position.
        await asyncio.to_thread(projector.apply, [], target)
    applied()


def fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Per table, key -> hash of the whole row, for comparing two builds."""
    result: dict[str, dict[str, str]] = {}
    for table, key in COMPARED.items():
        rows = con.execute(
            f"SELECT CAST(({key}) AS VARCHAR), md5(CAST(t AS VARCHAR)) FROM {table} t"
        ).fetchall()
        result[table] = dict(rows)
    return result


def differences(
    live: dict[str, dict[str, str]], rebuilt: dict[str, dict[str, str]], limit: int = 20
) -> list[str]:
    """What a rebuild disagrees on, as readable lines (empty: identical)."""
    found: list[str] = []
    for table in COMPARED:
        a, b = live.get(table, {}), rebuilt.get(table, {})
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                what = (
                    "missing in rebuild"
                    if key not in b
                    else ("only in rebuild" if key not in a else "differs")
                )
                found.append(f"{table} {key}: {what}")
                if len(found) >= limit:
                    return found
    return found


def promote(data_dir: Path) -> Path:
    """Make the finished `next` build the current generation; returns its path.

    The rename happens while nothing has the file open; the symlink switch is atomic, so a
    process starting at any moment opens either the old or the new generation, whole.
    """
    folder = data_dir / GENERATIONS
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _GENERATION.fullmatch(p.name))]
    target = folder / f"incidents-{max(numbers, default=0) + 1}.duckdb"
    os.replace(folder / NEXT, target)
    link = data_dir / f".{CURRENT}.switch"
    link.unlink(missing_ok=True)
    link.symlink_to(target.relative_to(data_dir))
    os.replace(link, data_dir / CURRENT)
    return target


def left_behind(data_dir: Path) -> list[Path]:
    """Generations no process uses: all but the current one, and the `next` build (a replay
    resumes it). A process that crashed after a swap, before it retired the old generation
    (readers get a grace period), leaves that file and its write-ahead log behind; call this
    while holding the data directory, so no other process can have one of them open.

    Write-ahead logs whose database is gone are left behind too: the first, pre-generation
    file's, whose name holds the symlink after the first swap (a crash before its retirement
    leaves it), and a generation's whose retirement stopped between the two deletions."""
    folder = data_dir / GENERATIONS
    if not folder.is_dir():
        return []
    current = live_path(data_dir)
    generations = [
        p for p in folder.iterdir() if _GENERATION.fullmatch(p.name) and p.resolve() != current
    ]
    first_wal = data_dir / f"{CURRENT}.wal"
    first = [first_wal] if (data_dir / CURRENT).is_symlink() and first_wal.exists() else []
    lone_wals = [
        p
        for p in folder.iterdir()
        if _GENERATION.fullmatch(p.name.removesuffix(".wal"))
        and p.name.endswith(".wal")
        and not p.with_suffix("").exists()
    ]
    return sorted([*generations, *first, *lone_wals])


def retire(path: Path) -> None:
    """Delete a generation no process uses any more (its file and write-ahead log).

    A first, pre-generation `incidents.duckdb` was a plain file: its name now holds the symlink
    to the new generation, so only its write-ahead log is left to remove.
    """
    if not path.is_symlink():
        path.unlink(missing_ok=True)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
