"""Live read models and their replacement by a replay, without readers ever noticing.

`Reader` is what queries need: one generation's DuckDB connection, its projector, the policy,
the clock and the reader threads. `LiveModels` owns the generation a service serves and
projects into, with its follower. `replay()` rebuilds into a shadow file while the
service keeps answering and projecting, stops the follower, catches the shadow up to the same
checkpoint (optionally comparing the two), promotes the shadow and switches readers to it.
Requests that started on the old generation finish there; it is closed and deleted later.

The follower is supervised: a projector that fails is started again after a delay that doubles
while it keeps failing (`RESTART_AFTER_S` up to `RESTART_AT_MOST_S`), and its `failure` says why
until it moves on again (`/readyz` answers 503 meanwhile, `/metrics` counts the restarts).
"""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import duckdb
import msgspec

from events.crash_points import reached as crash_point
from events.policy import Policy
from events.store import EventStore
from projections import rebuild as rebuilds
from projections.database import open_database
from projections.projector import Projector
from projections.tasks import stop
from services.clock import Clock
from services.errors import out_of_space
from services.telemetry import watch

T = TypeVar("T")
log = logging.getLogger(__name__)
RETIRE_AFTER_S: Final = 15.0  # longer than any read may run (the SQL sandbox stops at 10 s)
RESTART_AFTER_S: Final = 0.5  # first restart of a failed projector; doubles while it fails
RESTART_AT_MOST_S: Final = 30.0
# A failure for lack of space is tried again at least this often: space comes back when someone
# frees it, and the read models should follow soon after (a try costs one batch's transaction).
RESTART_WITHOUT_SPACE_AT_MOST_S: Final = 5.0


class Reader(msgspec.Struct, frozen=True, kw_only=True):
    """One generation of the read models, and what queries over it need."""

    con: duckdb.DuckDBPyConnection
    projector: Projector
    policy: Policy
    clock: Clock
    # Readers get their own threads: DuckDB releases the GIL, and the loop's default pool
    # (cores + 4) is shared with everything else that must not wait behind slow reports.
    executor: ThreadPoolExecutor

    async def run(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`query(cursor, *args, **kwargs)` on a fresh cursor, in a reader thread."""

        def call() -> T:
            cur = self.con.cursor()
            try:
                return query(cur, *args, **kwargs)
            finally:
                cur.close()

        return await asyncio.get_running_loop().run_in_executor(self.executor, call)


State = Literal["idle", "building", "swapping", "done", "failed"]


class ReplayStatus(msgspec.Struct):
    state: State = "idle"
    verify: bool = False
    start_seq: int = 0
    target_seq: int = 0
    done_seq: int = 0
    events_per_s: float = 0.0
    eta_s: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    generation: str | None = None
    differences: list[str] = []
    error: str | None = None


class LiveModels:
    def __init__(
        self, data_dir: Path, store: EventStore, reader: Reader, memory_limit: int
    ) -> None:
        self.data_dir = data_dir
        self.memory_limit = memory_limit  # every opening of a file in a process: the same
        self.store = store
        self.reader = reader
        self.status = ReplayStatus()
        self._follower = self._follow(reader.projector)
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def open(
        cls, data_dir: Path, store: EventStore, memory_limit: int, **reader: Any
    ) -> "LiveModels":
        for stale in rebuilds.left_behind(data_dir):
            log.warning("removing %s: a generation left behind by a crash after a swap", stale)
            rebuilds.retire(stale)
        con = open_database(rebuilds.live_path(data_dir), memory_limit)
        projector = Projector(con, store)
        return cls(data_dir, store, Reader(con=con, projector=projector, **reader), memory_limit)

    def _follow(self, projector: Projector) -> "asyncio.Task[None]":
        watch(projector)
        return asyncio.create_task(supervise(projector), name="projector")

    async def close(self) -> None:
        for task in [self._follower, *self._tasks]:
            await stop(task)
        self.reader.con.close()

    def start_replay(self, verify: bool) -> bool:
        """Begin a replay in the background; False when one is already running."""
        if self.status.state in ("building", "swapping"):
            return False
        task = asyncio.create_task(self.replay(verify), name="replay")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def replay(self, verify: bool) -> ReplayStatus:
        self.status = ReplayStatus(state="building", verify=verify, started_at=self.reader.clock())
        shadow = rebuilds.next_path(self.data_dir)
        try:
            # Bulk of the work while the live models keep following the log.
            await rebuilds.rebuild(
                self.store,
                shadow,
                self.reader.projector.checkpoint,
                self._progress,
                memory_limit=self.memory_limit,
            )
            self.status.state = "swapping"
            await stop(self._follower)
            checkpoint = self.reader.projector.checkpoint
            await rebuilds.rebuild(
                self.store, shadow, checkpoint, self._progress, memory_limit=self.memory_limit
            )
            if verify:
                self.status.differences = await asyncio.to_thread(self._compare, shadow)
            self._swap()
        except Exception as exc:
            log.exception("replay failed")
            self.status.state, self.status.error = "failed", f"{type(exc).__name__}: {exc}"
            if self._follower.done():
                self._follower = self._follow(self.reader.projector)
            return self.status
        self.status.state = "done"
        self.status.finished_at = self.reader.clock()
        return self.status

    def _progress(self, progress: rebuilds.Progress) -> None:
        self.status.start_seq = progress.start_seq
        self.status.target_seq = progress.target_seq
        self.status.done_seq = progress.done_seq
        self.status.events_per_s = progress.rate
        self.status.eta_s = progress.eta_s

    def _compare(self, shadow: Path) -> list[str]:
        cur = self.reader.con.cursor()
        try:
            live = rebuilds.fingerprints(cur)
        finally:
            cur.close()
        rebuilt_con = open_database(shadow, self.memory_limit)
        try:
            rebuilt = rebuilds.fingerprints(rebuilt_con)
        finally:
            rebuilt_con.close()
        return rebuilds.differences(live, rebuilt)

    def _swap(self) -> None:
        old = self.reader
        old_path = rebuilds.live_path(self.data_dir)
        path = rebuilds.promote(self.data_dir)
        con = open_database(path, self.memory_limit)
        projector = Projector(con, self.store)
        # One assignment: a request reads `reader` once, so it sees one generation, whole.
        self.reader = msgspec.structs.replace(old, con=con, projector=projector)
        self._follower = self._follow(projector)
        self.status.generation = path.name
        log.info("read models now %s (checkpoint %s)", path.name, projector.checkpoint)
        crash_point("after_swap")  # the old generation is left for the next start to remove
        retire = asyncio.create_task(self._retire(old.con, old_path), name="retire")
        self._tasks.add(retire)
        retire.add_done_callback(self._tasks.discard)

    async def _retire(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        try:
            await asyncio.sleep(RETIRE_AFTER_S)
        finally:
            con.close()
            rebuilds.retire(path)


class Restartable(Protocol):
    """A part that runs for ever (the projector, the notifier), and says why it failed."""

    failure: str | None
    restarts: int

    async def run(self) -> None: ...


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def keep_running(
    part: Restartable,
    name: str,
    describe: Callable[[BaseException], str] = str,
    where: Callable[[], str] = lambda: "",
    returned: str = "stopped",
) -> None:
    """Run `part` for ever: when it fails, note why (`describe` of the first error, in `part`'s
    `failure`, which `/readyz` shows; `where` adds to the first log line), and start it again
    after a delay that doubles while it keeps failing without moving on in between (up to
    `RESTART_AT_MOST_S`, `RESTART_WITHOUT_SPACE_AT_MOST_S` when a file system is full)."""
    delay = RESTART_AFTER_S
    while True:
        try:
            await part.run()
            reason = returned  # `run` runs for ever: returning is a fault
        except Exception as exc:
            cause = _first(exc)
            reason = f"{type(cause).__name__}: {describe(cause)}"
            if part.failure is None:
                log.error("%s failed%s", name, where(), exc_info=cause)
        if part.failure is None:
            delay = RESTART_AFTER_S  # it had recovered since: a new run of failures
        elif reason != part.failure:
            log.error("%s failed again: %s", name, reason)
        part.failure = reason
        log.warning("%s restarts in %.1f s (%s)", name, delay, reason)
        await asyncio.sleep(delay)
        at_most = RESTART_WITHOUT_SPACE_AT_MOST_S if out_of_space(reason) else RESTART_AT_MOST_S
        delay = min(delay * 2, at_most)
        part.restarts += 1


async def supervise(projector: Projector) -> None:
    await keep_running(
        projector,
        "projector",
        where=lambda: f" at checkpoint {projector.checkpoint}",
        returned="stopped following the log",
    )
