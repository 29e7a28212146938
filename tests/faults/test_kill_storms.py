"""Kill storms: `incidents serve` and its nats-server SIGKILLed again and again, at random moments
(during start-up and during a replay too), under eight producers that retry the same event ids
until they are acknowledged. Afterwards nothing acknowledged is lost or stored twice, every chain
verifies, the read models equal a fresh fold, and no valid request saw a 5xx but 503.

Real processes throughout: `serve` children on one data dir, fixed ports (the producers keep
their addresses across restarts, as behind a load balancer), the nats-server `serve` restarts.
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import msgspec
import nats
import pytest
from invariants import check_log, read_model_differences, served_models
from producers import FLEET, Producers
from serve_process import ServeProcess, eventually

from services.evidence import Log
from services.evidence.log import is_event
from services.natsserver import EmbeddedNatsServer, free_port

READY_S: Final = 90.0  # a start on a loaded 2-core machine, with a store to recover
PREFIX: Final = "kill-storm"
Record = Callable[[str, object], None]


@dataclass(frozen=True)
class Plan:
    serve_kills: int
    nats_kills: int
    during_start_up: int
    during_replay: int
    seed: int


@dataclass
class Kills:
    serve: int = 0
    nats: int = 0
    during_start_up: int = 0
    during_replay: int = 0
    replay_states: list[str] = field(default_factory=list)  # what GET said before each
    after_swap: int = 0  # a replay finished first: its old generation is left behind
    exits: list[str] = field(default_factory=list)  # serve ended by itself


class Storm:
    """Runs `serve` on one data dir and kills it and its nats-server as a `Plan` says."""

    def __init__(self, data_dir: Path, plan: Plan) -> None:
        self.data_dir = data_dir
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.kills = Kills()
        self.nats_port = free_port()
        self.http_port = free_port()
        self.nats_share = 0  # how many times the episode under way kills the nats-server
        self.starting_s = 0.0  # from spawn to "incidents ready", all starts that got there
        self.process = self.start()

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> ServeProcess:
        self._spawned = time.monotonic()
        return ServeProcess(
            self.data_dir,
            INCIDENTS_NATS_PORT=str(self.nats_port),
            INCIDENTS_HTTP=f"127.0.0.1:{self.http_port}",
        )

    def ready(self) -> None:
        # The whole line: a failed start's traceback quotes the source that logs it, and
        # should fail here with the whole output rather than pass for ready.
        self.process.wait_for(f"incidents ready: {self.http_url},", READY_S)
        self.process.http_url = self.http_url
        self.starting_s += time.monotonic() - self._spawned

    def run(self) -> None:
        """Every serve kill ends one episode; the episodes' kinds are shuffled."""
        plan = self.plan
        running = plan.serve_kills - plan.during_start_up - plan.during_replay
        episodes = ["start-up"] * plan.during_start_up + ["replay"] * plan.during_replay
        episodes += ["running"] * running
        self.rng.shuffle(episodes)
        while episodes:
            kind = episodes.pop()
            # The nats-server kills still to do, shared among the episodes that wait for
            # serve to be ready (this one included); start-up ones kill one by chance.
            up = 1 + sum(k != "start-up" for k in episodes)
            self.nats_share = -(-(plan.nats_kills - self.kills.nats) // up)
            done = {"start-up": self._during_start_up, "replay": self._during_replay}.get(
                kind, self._while_running
            )()
            if not done:  # the moment passed (ready, or the replay over) first: once more
                episodes.append(kind)
            self._restart()
        self.ready()

    def _during_start_up(self) -> bool:
        time.sleep(self.rng.uniform(0.05, 1.5))
        if self.rng.random() < 0.5:
            self._kill_nats_server(wait=False)
        before_ready = not any("incidents ready" in line for line in self._lines())
        self._kill_serve()
        self.kills.during_start_up += before_ready
        return before_ready

    def _while_running(self) -> bool:
        self.ready()
        for _ in range(self.nats_share):
            self._kill_nats_server(wait=True)
        time.sleep(self.rng.uniform(0.2, 1.2))
        self._kill_serve()
        return True

    def _during_replay(self) -> bool:
        self.ready()
        for _ in range(self.nats_share):
            self._kill_nats_server(wait=True)
        wanted = self.rng.choice(["building", "building", "swapping"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self._replay_started():
                time.sleep(0.2)
                continue
            state = "building"
            while state in ("building", "swapping"):
                state = self._replay_state()
                if state == wanted or (state == "swapping" and wanted == "building"):
                    self._kill_serve()
                    self.kills.during_replay += 1
                    self.kills.replay_states.append(state)
                    return True
                time.sleep(0.01)
            if state == "done":
                # Over before the kill: a kill now is one after the swap, before the old
                # generation is retired (README "Replay").
                self._kill_serve()
                self.kills.after_swap += 1
                return False
            # Failed: the nats-server killed above was not back yet. Start it again.
        raise AssertionError(f"no replay ran for a minute: {self.process.drain()}")

    def _replay_started(self) -> bool:
        try:
            return self.process.post("/v1/admin/replay", {"verify": False}).status_code == 202
        except httpx.TransportError:
            return False

    def _replay_state(self) -> str:
        try:
            state: str = self.process.get("/v1/admin/replay").json()["state"]
        except httpx.TransportError:
            return "unknown"
        return state

    def _kill_nats_server(self, wait: bool) -> None:
        """SIGKILL this serve's nats-server a random moment after it was spawned; with `wait`,
        first wait for one (serve restarts it about a second after the last kill)."""
        if wait:
            eventually(lambda: bool(self.process.nats_servers()), timeout=60, what="a nats-server")
        time.sleep(self.rng.uniform(0.1, 0.6))
        servers = self.process.nats_servers()
        for server in servers:
            server.kill()
            server.wait(10)
        self.kills.nats += bool(servers)

    def _kill_serve(self) -> None:
        if self.process.proc.poll() is not None:
            self.kills.exits.append("".join(self._lines()[-5:]))
        servers = self.process.nats_servers()
        self.process.stop()  # SIGKILL
        self.kills.serve += 1
        # Its nats-server dies with it (PDEATHSIG): wait for that, so the next serve's
        # nats-server finds its store and port free.
        for server in servers:
            server.wait(10)

    def _restart(self) -> None:
        self.process.drain()
        self.process = self.start()

    def _lines(self) -> list[str]:
        self.process.drain()
        return self.process.lines

    def caught_up(self) -> int:
        """Wait until the read models hold the whole log; its last sequence."""
        last = self.process.get("/readyz").json()["stream"]["last_seq"]
        eventually(
            lambda: self.process.get(f"/v1/incidents?wait_for={last}").status_code == 200,
            timeout=120,
            what=f"read models at {last}",
            every=0.5,
        )
        return int(last)

    def stop(self) -> tuple[int, str]:
        self.process.proc.terminate()
        return self.process.finish(60)


class _Fact(msgspec.Struct):
    type: str
    incident_id: str
    correlation_id: str | None = None
    fingerprint: str | None = None


_fact: Final = msgspec.json.Decoder(_Fact)


async def facts_twice(nats_url: str) -> list[str]:
    """Alertmanager facts stored twice under different ids: a group declared twice, an alert
    fired or resolved twice in one incident. The ids of these events are derived by the service,
    so a retry that derived other ids would store the fact again, unseen by the id check."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=5)
    try:
        log = Log(nc)
        state = await log.state()
        seen: Counter[tuple[str | None, ...]] = Counter()
        async for batch in log.records(state.first_seq, state.last_seq):
            for record in (r for r in batch if is_event(r)):
                fact = _fact.decode(record.raw)
                if fact.type == "incident.declared" and fact.correlation_id:
                    seen[(fact.type, fact.correlation_id)] += 1
                elif fact.type in ("alert.fired", "alert.resolved"):
                    seen[(fact.type, fact.incident_id, fact.fingerprint)] += 1
    finally:
        await nc.close()
    return [f"{fact} x{n}" for fact, n in seen.items() if n > 1]


def run_storm(tmp_path: Path, plan: Plan, record: Record, label: str) -> None:
    data_dir = tmp_path / "var"
    storm = Storm(data_dir, plan)
    started = time.monotonic()
    # Started before serve is ready: the first requests are refused, and retried.
    producers = Producers(storm.http_url, storm.nats_url, FLEET)
    producers.start()
    try:
        storm.run()
        # The storm is over: every producer gets its delivery in flight acknowledged.
        producers.finish(timeout=180)
        last_seq = storm.caught_up()
    finally:
        producers.abandon()  # a no-op once they finished
        code, output = storm.stop()
    assert code == 0, output[-3000:]

    outcomes, tally, kills = producers.outcomes, producers.tally, storm.kills
    server = EmbeddedNatsServer(data_dir / "nats", port=storm.nats_port)
    server.start()
    try:
        log = asyncio.run(check_log(server.url, frozenset(outcomes.acked)))
        twice = asyncio.run(facts_twice(server.url))
        differences = asyncio.run(
            read_model_differences(server.url, served_models(data_dir), tmp_path)
        )
    finally:
        server.stop()

    figures: dict[str, object] = {
        "seed": plan.seed,
        "kills_serve": kills.serve,
        "kills_nats_server": kills.nats,
        "kills_during_start_up": kills.during_start_up,
        "kills_during_replay": kills.during_replay,
        "replay_states": kills.replay_states,
        "kills_after_swap": kills.after_swap,
        "requests": sum(tally.requests.values()),
        "deliveries": sum(tally.delivered.values()),
        "retries": tally.retries,
        "acked": log.acked,
        "status_503": outcomes.statuses[503],
        "statuses": dict(sorted(outcomes.statuses.items())),
        "transport_errors": dict(outcomes.transport_errors),
        "nats_client_errors": sum(tally.client_errors.values()),
        "log_events": log.events,
        "log_last_seq": last_seq,
        "found_in_log": log.acked - len(log.missing),
        "duplicates": len(log.duplicates),
        "alert_facts_twice": len(twice),
        "chain_breaks": len(log.chain_breaks),
        "differences": len(differences),
        "serve_exits": len(kills.exits),
        "bad_5xx": len(outcomes.bad),
        "wrong_answers": len(tally.wrong),
        "seconds_starting": round(storm.starting_s, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    for name, value in figures.items():
        record(f"{PREFIX}.{label}.{name}", value)
    print(f"\n{PREFIX} {label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))

    log.assert_sound()
    assert twice == [], twice[:10]
    assert differences == [], differences
    assert outcomes.bad == [], outcomes.bad[:10]
    assert tally.wrong == [], tally.wrong[:10]
    assert kills.exits == [], kills.exits  # serve never ended by itself: only by our kills
    assert kills.serve >= plan.serve_kills and kills.nats >= plan.nats_kills, kills
    assert kills.during_start_up >= plan.during_start_up, kills
    assert kills.during_replay >= plan.during_replay, kills
    # Every producer got through the storm, and its acknowledgements are what was checked.
    assert set(tally.delivered) == set(FLEET), tally.delivered
    assert log.acked == len(outcomes.acked) > 0


@pytest.mark.slow
def test_kill_storm_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, record_testsuite_property: Record
) -> None:
    plan = Plan(serve_kills=20, nats_kills=20, during_start_up=6, during_replay=3, seed=16)
    run_storm(tmp_path, plan, record_testsuite_property, "full")


def test_small_kill_storm(tmp_path: Path, record_testsuite_property: Record) -> None:
    """The same storm, a few kills: `-m "not slow"` still runs one."""
    plan = Plan(serve_kills=3, nats_kills=3, during_start_up=1, during_replay=1, seed=1)
    run_storm(tmp_path, plan, record_testsuite_property, "small")
