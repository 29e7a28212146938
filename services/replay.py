"""Live read models and their replacement by a replay, without readers ever noticing.

`LiveModels` owns what a service serves and projects into: the current generation's DuckDB
connection, its projector and follower. `replay()` rebuilds into a shadow file while the
service keeps answering and projecting, stops the follower, catches the shadow up to the same
checkpoint (optionally comparing the two), promotes the shadow and switches readers to it.
Requests that started on the old generation finish there; it is closed and deleted later.
"""

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import msgspec
from litestar import Request, get, post
from litestar.exceptions import ClientException
from litestar.params import JSONBody

from events.store import EventStore
from events.tasks import stop
from projections import replay as rebuilds
from projections.database import open_database
from projections.projector import Projector
from services.auth import Permission
from services.guards import requires
from services.reads import Reader
from services.telemetry import watch

log = logging.getLogger(__name__)
RETIRE_AFTER_S: Final = 15.0  # longer than any read may run (the SQL sandbox stops at 10 s)

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
    def __init__(self, data_dir: Path, store: EventStore, reader: Reader) -> None:
        self.data_dir = data_dir
        self.store = store
        self.reader = reader
        self.status = ReplayStatus()
        self._follower = self._follow(reader.projector)
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def open(cls, data_dir: Path, store: EventStore, **reader: Any) -> "LiveModels":
        con = open_database(rebuilds.live_path(data_dir))
        projector = Projector(con, store)
        return cls(data_dir, store, Reader(con=con, projector=projector, **reader))

    def _follow(self, projector: Projector) -> "asyncio.Task[None]":
        watch(projector)
        return asyncio.create_task(projector.run(), name="projector")

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
                self.store, shadow, self.reader.projector.checkpoint, self._progress
            )
            self.status.state = "swapping"
            await stop(self._follower)
            checkpoint = self.reader.projector.checkpoint
            await rebuilds.rebuild(self.store, shadow, checkpoint, self._progress)
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
        rebuilt_con = open_database(shadow)
        try:
            rebuilt = rebuilds.fingerprints(rebuilt_con)
        finally:
            rebuilt_con.close()
        return rebuilds.differences(live, rebuilt)

    def _swap(self) -> None:
        old = self.reader
        old_path = rebuilds.live_path(self.data_dir)
        path = rebuilds.promote(self.data_dir)
        con = open_database(path)
        projector = Projector(con, self.store)
        # One assignment: a request reads `reader` once, so it sees one generation, whole.
        self.reader = msgspec.structs.replace(old, con=con, projector=projector)
        self._follower = self._follow(projector)
        self.status.generation = path.name
        log.info("read models now %s (checkpoint %s)", path.name, projector.checkpoint)
        retire = asyncio.create_task(self._retire(old.con, old_path), name="retire")
        self._tasks.add(retire)
        retire.add_done_callback(self._tasks.discard)

    async def _retire(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        try:
            await asyncio.sleep(RETIRE_AFTER_S)
        finally:
            con.close()
            rebuilds.retire(path)


class ReplayBody(msgspec.Struct, forbid_unknown_fields=True):
    verify: bool = False


def _models(request: Request[Any, Any, Any]) -> LiveModels:
    models: LiveModels = request.app.state.models
    return models


@post("/v1/admin/replay", status_code=202, guards=[requires(Permission.ADMINISTER)], tags=["admin"])
async def start_replay(
    request: Request[Any, Any, Any], data: JSONBody[ReplayBody | None] = None
) -> ReplayStatus:
    """Rebuild every read model from the log and swap it in; poll GET for progress."""
    models = _models(request)
    if not models.start_replay(data.verify if data else False):
        raise ClientException("a replay is already running", status_code=409)
    await asyncio.sleep(0)  # let it start, so the answer says "building"
    return models.status


@get("/v1/admin/replay", guards=[requires(Permission.ADMINISTER)], tags=["admin"])
async def replay_status(request: Request[Any, Any, Any]) -> ReplayStatus:
    return _models(request).status


ROUTES: Final = [start_replay, replay_status]
