"""Every named crash point (`events.crash_points`), crashed once in a real `incidents serve`.

Each case starts `serve` with `INCIDENTS_CRASH_AT` set, drives it to the point over HTTP, sees
it die as by SIGKILL (its embedded nats-server with it), starts it again on the same data dir
and store without the variable, retries with the same event ids what got no answer, and then
checks what every fault test checks (`invariants`): each acknowledged event in the log once,
chains that verify, live read models equal to a fresh fold, no 5xx but 503 with Retry-After.
A point without a case fails here, so a new point cannot go untested.
"""

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from invariants import Outcomes, check_log, read_model_differences, served_models
from serve_process import ServeProcess, eventually

from events import crash_points
from projections import rebuild as rebuilds
from services.natsserver import EmbeddedNatsServer, free_port

# Generous: 8 engineers' tests share 2 cores.
DIES_WITHIN_S = 60.0
REPLAY_WITHIN_S = 120.0


@dataclass(frozen=True)
class Write:
    path: str
    body: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.body["event_id"])


@dataclass
class Writes:
    """What was sent to the service, what it acknowledged, and what got no answer."""

    point: str
    outcomes: Outcomes = field(default_factory=Outcomes)
    in_doubt: list[Write] = field(default_factory=list)
    retried: list[httpx.Response] = field(default_factory=list)
    incident_id: str = ""  # the last one declared
    last_seq: int = 0
    count: int = 0

    def declare(self, process: ServeProcess) -> str:
        """A new incident, acknowledged; its id."""
        answer = self.send(process, Write("/v1/incidents", self.body(title="crash point")))
        assert answer is not None, "the service died before the crash point"
        self.incident_id = str(answer.json()["incident_id"])
        return self.incident_id

    def note(self, process: ServeProcess, incident_id: str) -> httpx.Response | None:
        return self.send(process, Write(f"/v1/incidents/{incident_id}/notes", self.body()))

    def body(self, **fields: str) -> dict[str, Any]:
        """A declaration's body when `fields` has a title, else a note's; a new event id."""
        self.count += 1
        event_id = f"{self.point}-{self.count}"
        if "title" in fields:
            return {"event_id": event_id, "severity": "P3", **fields}
        return {"event_id": event_id, "text": f"note {self.count}", **fields}

    def send(self, process: ServeProcess, write: Write) -> httpx.Response | None:
        """The answer; None when there was none (the write may or may not be stored)."""
        try:
            answer = process.post(write.path, write.body)
        except httpx.TransportError as exc:
            self.outcomes.failed(exc)
            self.in_doubt.append(write)
            return None
        assert self.outcomes.answered(write.path, answer, (write.event_id,)), answer.text
        self.last_seq = max([self.last_seq, *(e["seq"] for e in answer.json()["events"])])
        return answer

    def retry(self, process: ServeProcess) -> None:
        """Each write in doubt again, same event id; every one must be acknowledged now."""
        doubtful, self.in_doubt = self.in_doubt, []
        answers = [self.send(process, write) for write in doubtful]
        assert self.in_doubt == [], "no answer after the restart"
        self.retried = [a for a in answers if a is not None]

    def seen(self, process: ServeProcess) -> None:
        """Until the read models include every acknowledged write."""
        answer = process.get(f"/v1/audit?limit=1&wait_for={self.last_seq}")
        assert answer.status_code == 200, answer.text


def replay(process: ServeProcess) -> None:
    started = process.post("/v1/admin/replay", {"verify": True})
    assert started.status_code == 202, started.text


def replayed(process: ServeProcess) -> dict[str, Any]:
    """The replay's status once it finished."""
    status: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal status
        status = process.get("/v1/admin/replay").json()
        return status["state"] in ("done", "failed")

    eventually(finished, REPLAY_WITHIN_S, "the replay", every=0.1)
    return status


def stray_files(data_dir: Path) -> list[str]:
    """Read-model files no generation in use owns: what a crash after a swap may leave."""
    current = rebuilds.live_path(data_dir)
    owned = {current, current.with_name(current.name + ".wal")}
    folder = data_dir / rebuilds.GENERATIONS
    candidates = [
        *(folder.iterdir() if folder.is_dir() else []),
        *data_dir.glob(f"{rebuilds.CURRENT}*"),
    ]
    return sorted(
        str(p.relative_to(data_dir))
        for p in candidates
        # The `next` build is no generation yet: a replay resumes it.
        if p not in owned and not p.is_symlink() and not p.name.startswith(rebuilds.NEXT)
    )


# Each case: drive `serve` to its point (it dies there), then, once restarted, check what the
# point is about. Both get the writes; the second the data dir too.
Drive = Callable[[ServeProcess, Writes], None]
Check = Callable[[ServeProcess, Writes, Path], None]


def publish_then_die(process: ServeProcess, writes: Writes) -> None:
    answer = writes.send(process, Write("/v1/incidents", writes.body(title="stored, unanswered")))
    assert answer is None, f"answered {answer}: the point is before the answer"


def retried_gets_the_stored_event(process: ServeProcess, writes: Writes, data_dir: Path) -> None:
    # `retry` ran already: the one write in doubt was acknowledged, as the original it stored.
    [answer] = writes.retried
    assert [e["duplicate"] for e in answer.json()["events"]] == [True], answer.text


def second_batch_dies(process: ServeProcess, writes: Writes) -> None:
    """One batch committed, the crash in the second (`<point>@2`): a projector that resumes
    from a checkpoint that is not zero."""
    incident_id = writes.declare(process)
    writes.seen(process)
    writes.note(process, incident_id)


def resumed(process: ServeProcess, writes: Writes, data_dir: Path) -> None:
    writes.seen(process)


def build_dies(process: ServeProcess, writes: Writes) -> None:
    incident_id = writes.declare(process)
    for _ in range(3):
        writes.note(process, incident_id)
    writes.seen(process)
    replay(process)


def build_resumes(process: ServeProcess, writes: Writes, data_dir: Path) -> None:
    # The interrupted build kept what it committed: the replay resumes from there.
    with duckdb.connect(str(rebuilds.next_path(data_dir)), read_only=True) as shadow:
        [(checkpoint,)] = shadow.execute("SELECT seq FROM checkpoint").fetchall()
    assert 0 < checkpoint <= writes.last_seq
    writes.note(process, writes.incident_id)  # more log than the interrupted build saw
    writes.seen(process)
    replay(process)
    status = replayed(process)
    assert status["state"] == "done" and status["differences"] == [], status
    assert status["generation"] == "incidents-1.duckdb", status


def swap_dies(process: ServeProcess, writes: Writes) -> None:
    """Two replays: the first swaps the first (plain) file for generation 1, the second
    generation 1 for generation 2 and dies (`after_swap@2`) with both left to retire."""
    incident_id = writes.declare(process)
    writes.note(process, incident_id)
    writes.seen(process)
    replay(process)
    status = replayed(process)
    assert status["state"] == "done", status
    replay(process)


def nothing_left_behind(process: ServeProcess, writes: Writes, data_dir: Path) -> None:
    assert rebuilds.live_path(data_dir).name == "incidents-2.duckdb"
    assert stray_files(data_dir) == []
    assert any("a generation left behind" in line for line in process.lines), process.lines


@dataclass(frozen=True)
class Case:
    crash_at: str
    drive: Drive
    check: Check
    # Files (in the data dir) the crash must leave for the restart to deal with.
    leaves: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "after_publish": Case("after_publish", publish_then_die, retried_gets_the_stored_event),
    "before_write": Case("before_write@2", second_batch_dies, resumed),
    "after_write": Case("after_write@2", second_batch_dies, resumed),
    "after_commit": Case("after_commit@2", second_batch_dies, resumed),
    "during_build": Case(
        "during_build",
        build_dies,
        build_resumes,
        leaves=(f"{rebuilds.GENERATIONS}/{rebuilds.NEXT}",),
    ),
    # Generation 1 (and, unless its grace period ended first, the first file's write-ahead log,
    # whose name holds the symlink now: `test_what_a_crash_after_a_swap_leaves_is_found`).
    "after_swap": Case(
        "after_swap@2",
        swap_dies,
        nothing_left_behind,
        leaves=(f"{rebuilds.GENERATIONS}/incidents-1.duckdb",),
    ),
}


def test_every_crash_point_has_a_case() -> None:
    assert sorted(CASES) == sorted(crash_points.POINTS)
    for point, case in CASES.items():
        assert crash_points.parse(case.crash_at)[0] == point


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("after_swap", ("after_swap", 1)), ("before_write@3", ("before_write", 3))],
)
def test_a_crash_point_and_its_pass(value: str, parsed: tuple[str, int]) -> None:
    assert crash_points.parse(value) == parsed


@pytest.mark.parametrize("value", ["after_swp", "after_swap@0", "after_swap@", "after_swap@x"])
def test_a_misspelt_crash_point_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=crash_points.ENV):
        crash_points.parse(value)


@pytest.mark.parametrize("point", crash_points.POINTS)
def test_crash_point(point: str, serve: Callable[..., ServeProcess], tmp_path: Path) -> None:
    case = CASES.get(point)
    assert case is not None, f"crash point {point} has no case in CASES"
    port = str(free_port())
    writes = Writes(point)

    crashing = serve(INCIDENTS_NATS_PORT=port, **{crash_points.ENV: case.crash_at})
    crashing.wait_ready()
    case.drive(crashing, writes)
    returncode, output = crashing.finish(DIES_WITHIN_S)
    assert returncode == -signal.SIGKILL, output
    assert f"crash point {point} reached" in output
    data_dir = crashing.data_dir
    eventually(lambda: not crashing.nats_servers(), 20, "its nats-server dies with it")
    assert [name for name in case.leaves if not (data_dir / name).exists()] == []
    left = sorted({*case.leaves, *stray_files(data_dir)})

    restarted = serve(INCIDENTS_NATS_PORT=port)
    restarted.wait_ready()
    writes.retry(restarted)
    case.check(restarted, writes, data_dir)
    writes.seen(restarted)
    restarted.proc.send_signal(signal.SIGTERM)
    returncode, output = restarted.finish()
    assert returncode == 0, output

    server = EmbeddedNatsServer(data_dir / "nats", port=int(port))
    server.start()
    try:
        log = asyncio.run(check_log(server.url, writes.outcomes.acked))
        differences = asyncio.run(
            read_model_differences(server.url, served_models(data_dir), tmp_path)
        )
    finally:
        server.stop()
    log.assert_sound()
    assert log.events == len(writes.outcomes.acked) > 0
    assert differences == []
    assert writes.outcomes.bad == []
    print(
        f"{point}: crashed at {case.crash_at}, {len(writes.outcomes.acked)} acknowledged, "
        f"{log.events} in the log, {writes.outcomes.transport_errors.total()} unanswered, "
        f"left for the restart: {left}"
    )


def test_what_a_crash_after_a_swap_leaves_is_found(tmp_path: Path) -> None:
    """Regression: the first file's write-ahead log, orphaned once its name held the symlink,
    stayed for ever; so would a generation's log whose retirement stopped half-way."""
    folder = tmp_path / rebuilds.GENERATIONS
    folder.mkdir()
    kept = ["incidents-3.duckdb", "incidents-3.duckdb.wal", rebuilds.NEXT, f"{rebuilds.NEXT}.wal"]
    gone = ["incidents-2.duckdb", "incidents-2.duckdb.wal", "incidents-1.duckdb.wal"]
    for name in kept + gone:
        (folder / name).write_bytes(b"")
    (tmp_path / f"{rebuilds.CURRENT}.wal").write_bytes(b"")
    (tmp_path / rebuilds.CURRENT).symlink_to(f"{rebuilds.GENERATIONS}/incidents-3.duckdb")
    found = rebuilds.left_behind(tmp_path)
    # A generation's file stands for its log too (`retire` deletes both).
    first_wal = tmp_path / f"{rebuilds.CURRENT}.wal"
    assert found == sorted(
        [first_wal, *(folder / n for n in gone if n != "incidents-2.duckdb.wal")]
    )
    for path in found:
        rebuilds.retire(path)
    assert not first_wal.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept)
    assert rebuilds.left_behind(tmp_path) == []
