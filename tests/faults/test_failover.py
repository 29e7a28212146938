"""compose's 3-node JetStream cluster failing over under load (issue 16 item 5).

Three real nats-servers on loopback (deploy/nats/nats.conf, `cluster_support`), stream replicas
3, `incidents serve` children with compose's environment. Producers post over HTTP, each
retrying the same event ids until 2xx. Nodes die by SIGKILL. Afterwards: every acknowledged
event is in the log once, the chains verify, no answer was a 5xx other than 503 with
`Retry-After`, the services never restarted, and the projector's read models equal a fresh
fold of the log. The figures (failover times, counts) are printed: `pytest -s` shows them.
"""

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from cluster_support import (
    FORMED_WITHIN_S,
    STREAM,
    Node,
    compose_env,
    last_seqs,
    running_cluster,
    service_url,
    stream_leader,
    wait_formed,
    wait_stream_leader,
)
from invariants import Outcomes, check_log, read_model_differences, served_models
from serve_process import ServeProcess
from tests_support import as_role

from events.stream import event_ids_stream
from services.auth import Role

# The requirement: writes are accepted again within 10 s of the leader's death. A
# deadline for waiting, not a speed benchmark. Nearly all of it is the streams' Raft elections
# (the log's and its id claims'): 2.9 to 7.8 s over 22 kills on a busy 2-core machine.
FAILOVER_DEADLINE_S: Final = 10.0
CAUGHT_UP_WITHIN_S: Final = 60.0  # a restarted node, the projector: generous on a busy machine
PRODUCERS: Final = 4
STREAMS: Final = (STREAM, event_ids_stream(STREAM))  # a write appends to both
RETRY_PAUSE_S: Final = 0.05  # producers retry fast, so the first write after a failover shows


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    with running_cluster(tmp_path_factory.mktemp("failover")) as nodes:
        yield nodes


def _declared(incident_id: str) -> dict[str, Any]:
    return {
        "type": "incident.declared",
        "event_id": f"{incident_id}-declared",
        "incident_id": incident_id,
        "occurred_at": "2026-11-20T10:00:00Z",
        "actor": "failover",
        "source": "synthetic",
        "title": "failing over",
        "severity": "P3",
    }


def _note(incident_id: str, n: int) -> dict[str, Any]:
    return {
        "type": "incident.note_added",
        "event_id": f"{incident_id}-note-{n}",
        "incident_id": incident_id,
        "occurred_at": "2026-11-20T10:01:00Z",
        "actor": "failover",
        "source": "synthetic",
        "text": f"note {n}",
    }


def _writes(tag: str) -> Iterator[list[dict[str, Any]]]:
    """One producer's writes: a single event, one incident's atomic batch, a batch across
    incidents; the ids are fixed, so a retry sends the same events."""
    for n in range(100_000):
        incident = f"{tag}-{n}"
        yield [_declared(incident)]
        yield [_note(incident, 1), _note(incident, 2)]
        yield [_declared(f"{incident}-a"), _declared(f"{incident}-b")]


@dataclass
class Load:
    """Producers over HTTP and what they saw; `accepted` holds (sent, answered) of each 2xx."""

    outcomes: Outcomes = field(default_factory=Outcomes)
    accepted: list[tuple[float, float]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 4xx: a valid write must never get one
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def produce(self, client: httpx.AsyncClient, tag: str) -> None:
        for events in _writes(tag):
            ids = tuple(e["event_id"] for e in events)
            body: object = events[0] if len(events) == 1 else events
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    answer = await client.post(
                        "/v1/events", json=body, headers=as_role(Role.PRODUCER)
                    )
                except httpx.TransportError as exc:
                    self.outcomes.failed(exc)
                else:
                    if self.outcomes.answered(tag, answer, ids):
                        self.accepted.append((sent, time.monotonic()))
                        break
                    if answer.status_code < 500:
                        self.refused.append(f"{tag}: {answer.status_code} {answer.text[:300]}")
                        return
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                return

    def accepted_since(self, since: float) -> int:
        return sum(1 for sent, _ in self.accepted if sent >= since)

    async def first_accepted_after(self, since: float, deadline_s: float) -> float:
        """Seconds from `since` to the first 2xx of a request sent after it."""
        while True:
            answered = [done for sent, done in self.accepted if sent >= since]
            if answered:
                return min(answered) - since
            assert not self.refused, self.refused
            if time.monotonic() - since > deadline_s:
                raise AssertionError(
                    f"no write accepted within {deadline_s}s; seen: {self.outcomes.statuses}, "
                    f"transport errors {self.outcomes.transport_errors}"
                )
            await asyncio.sleep(0.02)

    async def flowing(self) -> None:
        """Wait until writes are being accepted now."""
        await self.first_accepted_after(time.monotonic(), CAUGHT_UP_WITHIN_S)


@asynccontextmanager
async def producing(urls: list[str]) -> AsyncIterator[Load]:
    load = Load()
    clients = [httpx.AsyncClient(base_url=u, timeout=30) for u in urls]
    async with httpx.AsyncClient(timeout=30) as probe:
        ready = [(await probe.get(f"{u}/readyz")).status_code for u in urls]
    assert ready == [200] * len(urls), ready
    tasks = [
        asyncio.create_task(load.produce(clients[p % len(clients)], f"FO{time.time_ns()}-{p}"))
        for p in range(PRODUCERS)
    ]
    try:
        yield load
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
    assert not load.refused, load.refused


def _services(cluster: Mapping[str, Node], tmp_path: Path, *names: str) -> list[ServeProcess]:
    """`incidents serve` as compose runs each named service, ready."""
    started = []
    try:
        for n, name in enumerate(names):
            data_dir = tmp_path / f"{name}-{n}"
            started.append(ServeProcess(data_dir, **compose_env(name, cluster, data_dir)))
        for serve in started:
            serve.wait_ready(60)
    except BaseException:
        for serve in started:
            serve.stop()
        raise
    return started


def _stopped(serve: ServeProcess) -> None:
    """SIGTERM, a clean exit: the process that ran through the failovers, never restarted."""
    assert serve.proc.poll() is None, "the service died during the failover"
    serve.proc.send_signal(signal.SIGTERM)
    code, output = serve.finish(60)
    assert code == 0, output[-3000:]


@dataclass(frozen=True)
class Failover:
    killed: str
    elected_s: float  # kill -> both streams led again (the cluster's part)
    writes_s: float  # kill -> first 2xx of a write sent after the kill (what clients see)


async def _kill_leader(cluster: Mapping[str, Node], load: Load) -> Failover:
    """SIGKILL the stream's leader under load; seconds until a write is accepted again."""
    await load.flowing()
    leader = await asyncio.to_thread(wait_stream_leader, cluster)
    killed = time.monotonic()
    await asyncio.to_thread(cluster[leader].kill)
    election = asyncio.create_task(_elected(cluster, leader, killed))
    try:
        took = await load.first_accepted_after(killed, FAILOVER_DEADLINE_S)
        return Failover(leader, round(await election, 2), round(took, 2))
    finally:
        election.cancel()


async def _elected(cluster: Mapping[str, Node], killed: str, since: float) -> float:
    """Seconds from `since` until both streams a write needs (the log, its id claims) have a
    leader other than `killed` that the running nodes agree on."""
    for stream in STREAMS:
        while (await asyncio.to_thread(stream_leader, cluster, stream)) in (None, killed):
            assert time.monotonic() - since < FORMED_WITHIN_S, f"no {stream} leader after {killed}"
            await asyncio.sleep(0.05)
    return time.monotonic() - since


async def _back(cluster: Mapping[str, Node], name: str) -> None:
    """Start a killed node again and wait until its copy of the stream has caught up with the
    leader's last sequence as it was then."""
    cluster[name].start()
    await asyncio.to_thread(wait_formed, cluster)
    leader = await asyncio.to_thread(wait_stream_leader, cluster)
    target = (await asyncio.to_thread(last_seqs, cluster))[leader] or 0
    deadline = time.monotonic() + CAUGHT_UP_WITHIN_S
    while ((await asyncio.to_thread(last_seqs, cluster))[name] or 0) < target:
        assert time.monotonic() < deadline, f"{name} did not catch up to {target}"
        await asyncio.sleep(0.2)


async def _agreed_last_seqs(cluster: Mapping[str, Node], stream: str) -> dict[str, int | None]:
    """Each node's last sequence of `stream`, once all of them have the same."""
    deadline = time.monotonic() + CAUGHT_UP_WITHIN_S
    while len(set((seqs := await asyncio.to_thread(last_seqs, cluster, stream)).values())) > 1:
        assert time.monotonic() < deadline, (stream, seqs)
        await asyncio.sleep(0.2)
    return seqs


@dataclass
class ProjectorWatch:
    """The `all` replica's projector as `/readyz` shows it, sampled through the failovers."""

    url: str
    checkpoints: list[int] = field(default_factory=list)
    restarts: set[int] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    projector = (await http.get("/readyz")).json()["projector"]
                except httpx.TransportError:
                    pass  # a sample lost to a busy machine: the next one counts
                else:
                    self.checkpoints.append(projector["checkpoint"])
                    self.restarts.add(projector["restarts"])
                await asyncio.sleep(0.1)

    async def to_end(self) -> float:
        """Seconds until the checkpoint reaches the stream's last sequence (load stopped)."""
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while True:
                ready = (await http.get("/readyz")).json()
                if ready["projector"]["checkpoint"] >= ready["stream"]["last_seq"]:
                    return time.monotonic() - start
                assert time.monotonic() - start < CAUGHT_UP_WITHIN_S, ready
                await asyncio.sleep(0.2)


def _report(title: str, load: Load, **figures: object) -> str:
    statuses = dict(sorted(load.outcomes.statuses.items()))
    lines = [f"{title}: acked {len(load.outcomes.acked)}, statuses {statuses}"]
    lines += [f"  {k}: {v}" for k, v in figures.items()]
    if load.outcomes.transport_errors:
        lines.append(f"  transport errors: {dict(load.outcomes.transport_errors)}")
    return "\n".join(lines)


def _logged_503s(services: list[ServeProcess]) -> int:
    """The services' own count (stopped, their output read): each 503 answered is logged."""
    return sum(1 for s in services for line in s.lines if "answered 503" in line)


@pytest.mark.slow
async def test_the_stream_leader_killed_twice_under_load(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Two SIGKILLs of the stream's leader while 4 producers write through the `all` and an
    `api` replica (the killed node back in between): each time writes resume within 10 s
    through the same processes, and the projector goes on from where it stood."""
    services = _services(cluster, tmp_path, "incidents", "incidents-api")
    query = services[0]
    watch = ProjectorWatch(query.http_url)
    watching = asyncio.create_task(watch.run())
    try:
        failovers: list[Failover] = []
        async with producing([s.http_url for s in services]) as load:
            for _ in range(2):
                failover = await _kill_leader(cluster, load)
                failovers.append(failover)
                await load.flowing()
                await _back(cluster, failover.killed)
            await load.flowing()
        projected_in = await watch.to_end()
        watch.stop.set()
        await watching
        for serve in services:
            _stopped(serve)
        logged = _logged_503s(services)
    finally:
        watching.cancel()
        for serve in services:
            serve.stop()

    leader = cluster[await asyncio.to_thread(wait_stream_leader, cluster)]
    check = await check_log(service_url(leader), load.outcomes.acked)
    differences = await read_model_differences(
        service_url(leader), served_models(query.data_dir), tmp_path
    )
    print(
        _report(
            "leader killed twice",
            load,
            failovers=failovers,
            events_in_log=check.events,
            duplicates=len(check.duplicates),
            projector_samples=len(watch.checkpoints),
            projected_to_end_after_s=round(projected_in, 2),
            logged_503_lines=logged,
        )
    )
    assert not load.outcomes.bad, load.outcomes.bad[:5]
    assert logged == load.outcomes.statuses[503]  # every 503 was logged
    check.assert_sound()
    assert check.acked == len(load.outcomes.acked) > 0
    # The projector kept its position: it never moved back, never restarted (a restart would
    # read from its checkpoint again), and its models equal a fresh fold (nothing twice, none
    # skipped).
    assert watch.checkpoints == sorted(watch.checkpoints) and watch.checkpoints[-1] > 0
    assert watch.restarts == {0}
    assert sum("projector on" in line for line in query.lines) == 1
    assert differences == []
    assert all(f.writes_s <= FAILOVER_DEADLINE_S for f in failovers)


async def test_a_follower_down_and_back_catches_up(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """A node that leads neither stream a write needs dies under load: writes go on; back,
    its copy reaches the same last sequence as the others."""
    [api] = _services(cluster, tmp_path, "incidents-api")
    try:
        async with producing([api.http_url]) as load:
            await load.flowing()
            leaders = {await asyncio.to_thread(wait_stream_leader, cluster, s) for s in STREAMS}
            follower = next(n for n in cluster if n not in leaders)
            killed = time.monotonic()
            await asyncio.to_thread(cluster[follower].kill)
            # Writes go on with two of three: a write accepted after the kill, then many more.
            await load.first_accepted_after(killed, FAILOVER_DEADLINE_S)
            while load.accepted_since(killed) < 50:
                assert time.monotonic() - killed < CAUGHT_UP_WITHIN_S, load.outcomes.statuses
                await asyncio.sleep(0.1)
            while_down = load.accepted_since(killed)
            cluster[follower].start()
            await asyncio.to_thread(wait_formed, cluster)
            await load.flowing()
        _stopped(api)
    finally:
        api.stop()

    seqs = {stream: await _agreed_last_seqs(cluster, stream) for stream in STREAMS}
    node = cluster[follower]
    check = await check_log(service_url(node), load.outcomes.acked)
    print(
        _report(
            "follower down and back",
            load,
            follower=follower,
            accepted_while_down=while_down,
            last_seqs=seqs,
            events_in_log=check.events,
        )
    )
    assert all(None not in per_node.values() for per_node in seqs.values()), seqs
    assert not load.outcomes.bad, load.outcomes.bad[:5]
    check.assert_sound()
