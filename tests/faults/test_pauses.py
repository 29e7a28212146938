"""Pauses and partitions between `incidents serve` and its NATS: 503s meanwhile, then recovery
by itself, nothing acknowledged lost or duplicated (issue 16 item 3).

Real processes throughout: `incidents serve` children, their nats-servers frozen with SIGSTOP,
or a separately started nats-server reached through `tcp_proxy.TcpProxy`, which delays, drops
(a partition: nothing moves, nothing is closed) and cuts (every connection closed, new ones
refused) what passes. Producers post events over HTTP, each retrying the same event id until it
gets a 2xx, from threads of their own while the test does the harm.

The bound on an answer while JetStream does not answer: a write fails at the first JetStream
request not answered within the store's timeout (`events.store.EventStore`, 5 s); one that
arrives while another append is out waits for it first (group commit, services/write/commits.py),
so a 503 comes within twice that, 10 s. `ANSWER_WITHIN_S` (15 s) is the producers' HTTP timeout:
an answer later than that (or none) is a transport error the test fails on. Once the service
gave up a silent link (services/bootstrap.py: 10 to 15 s), writes fail at once until it is back.
"""

import asyncio
import contextlib
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from invariants import Outcomes, check_log, read_model_differences, served_models
from serve_process import ServeProcess, eventually
from tcp_proxy import TcpProxy
from tests_support import producer_declared, producer_note

from services.natsserver import EmbeddedNatsServer

ANSWER_WITHIN_S: Final = 15.0  # the producers' HTTP timeout: no answer may take longer
PAUSE_S: Final = 7.0  # longer than the store's JetStream timeout (5 s)
# services.bootstrap pings every 5 s and gives the link up after 2 unanswered: 10 to 15 s.
NOTICE_WITHIN_S: Final = 30.0
NOT_CONNECTED: Final = "not connected to NATS (reconnecting)"  # events.store's reason
UNHEALTHY_AFTER: Final = "1s"  # /healthz fails this long after the link was given up
RECOVER_WITHIN_S: Final = 60.0  # deadline to wait for, not a claim (the figures are printed)
CUT_S: Final = 2.0  # connections refused for this long after the cut
PRODUCERS: Final = 3
NOTES_PER_INCIDENT: Final = 4


@dataclass
class Timeline:
    """When each answer came, to tell what happened during and after a fault."""

    # When answered, status, seconds it took, stream sequence of the event (0 unless 2xx).
    answers: list[tuple[float, int, float, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, at: float, status: int, took: float, seq: int) -> None:
        with self._lock:
            self.answers.append((at, status, took, seq))

    def between(self, start: float, end: float) -> list[tuple[float, int, float, int]]:
        with self._lock:
            return [a for a in self.answers if start <= a[0] < end]

    def first_ok_after(self, start: float) -> tuple[float, int] | None:
        """(time, stream sequence) of the first 2xx answered after `start`."""
        ok = [(at, seq) for at, status, _, seq in self.between(start, float("inf")) if status < 300]
        return min(ok) if ok else None

    @property
    def slowest(self) -> float:
        with self._lock:
            return max((took for _, _, took, _ in self.answers), default=0.0)


class Producers:
    """Threads posting producer events to `POST /v1/events`: per incident a declaration and
    notes, each retried with the same event id until it is acknowledged."""

    def __init__(self, http_url: str, run: str, count: int = PRODUCERS) -> None:
        self.http_url = http_url
        self.run = run
        self.outcomes = Outcomes()
        self.timeline = Timeline()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._produce, args=(i,), daemon=True) for i in range(count)
        ]

    def __enter__(self) -> "Producers":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(ANSWER_WITHIN_S * 2)
        assert not any(t.is_alive() for t in self._threads), "a producer hangs"

    def _produce(self, producer: int) -> None:
        with httpx.Client(base_url=self.http_url, timeout=ANSWER_WITHIN_S) as client:
            n = 0
            while not self._stopping.is_set():
                incident_id = f"{self.run}-P{producer}-{n}"
                bodies = [producer_declared(incident_id, f"{incident_id}-d")] + [
                    producer_note(incident_id, f"{incident_id}-n{k}", f"note {k}")
                    for k in range(NOTES_PER_INCIDENT)
                ]
                for body in bodies:
                    if not self._until_acked(client, body):
                        return
                n += 1

    def _until_acked(self, client: httpx.Client, body: dict[str, Any]) -> bool:
        """Post `body` until it is acknowledged; False when told to stop first."""
        event_id = str(body["event_id"])
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                answer = client.post("/v1/events", json=body)
            except httpx.TransportError as exc:
                self.outcomes.failed(exc)
                time.sleep(0.2)
                continue
            now = time.monotonic()
            acked = self.outcomes.answered(event_id, answer, (event_id,))
            seq = answer.json()["events"][0]["seq"] if acked else 0
            self.timeline.add(now, answer.status_code, now - started, seq)
            if acked:
                return True
            time.sleep(0.2)
        return False

    def wait_acked(self, more_than: int, timeout: float = RECOVER_WITHIN_S) -> None:
        eventually(
            lambda: len(self.outcomes.acked) > more_than, timeout, "producers' writes", every=0.1
        )


def readyz(process: ServeProcess) -> httpx.Response:
    return httpx.get(process.http_url + "/readyz", timeout=ANSWER_WITHIN_S)


@dataclass(frozen=True)
class Recovery:
    first_ok_s: float  # from the end of the fault to the first 2xx write
    caught_up_s: float  # ... to the projector's checkpoint past that write
    unavailable: int  # 503s answered from the start of the fault to the first 2xx


def recovered(process: ServeProcess, producers: Producers, fault: float, healed: float) -> Recovery:
    """Wait for the service to write and project again after a fault from `fault` to `healed`."""

    def first_ok() -> tuple[float, int] | None:
        return producers.timeline.first_ok_after(healed)

    eventually(lambda: first_ok() is not None, RECOVER_WITHIN_S, "a 2xx write after the fault")
    ok_at, seq = first_ok() or (0.0, 0)

    def caught_up() -> bool:
        answer = readyz(process)
        return answer.status_code == 200 and answer.json()["projector"]["checkpoint"] >= seq

    eventually(caught_up, RECOVER_WITHIN_S, "the projector past the first write after it", 0.2)
    answers = producers.timeline.between(fault, ok_at)
    return Recovery(
        first_ok_s=round(ok_at - healed, 2),
        caught_up_s=round(time.monotonic() - healed, 2),
        unavailable=sum(status == 503 for _, status, _, _ in answers),
    )


def not_ready_while(process: ServeProcess) -> dict[str, Any]:
    """`/readyz` during a fault: 503 `unavailable`, answered within the producers' timeout."""
    answer = readyz(process)
    assert answer.status_code == 503, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == "unavailable", body
    return body


def noticed(process: ServeProcess, since: float) -> tuple[float, httpx.Response]:
    """Wait until the service gave up its silent NATS link: `/healthz` fails `UNHEALTHY_AFTER`
    later (it answers without asking NATS, so it can be polled often). The seconds from
    `since` to the link given up, and that `/healthz` answer."""
    answers: list[httpx.Response] = []

    def failing() -> bool:
        answers.append(process.get("/healthz"))
        return answers[-1].status_code == 503

    eventually(failing, NOTICE_WITHIN_S, "/healthz failing while NATS is out of reach", 0.25)
    return time.monotonic() - since - answers[-1].json()["nats"]["down_for_s"], answers[-1]


def stop_serve(process: ServeProcess) -> list[str]:
    """Stop `serve` cleanly; what it logged about its NATS connection coming back."""
    process.proc.send_signal(signal.SIGTERM)
    code, output = process.finish(timeout=30)
    assert code == 0, output[-3000:]
    return re.findall(r"NATS connection back after [\d.]+s", output)


def assert_invariants(
    producers: Producers, nats_url: str, data_dir: Path, scratch: Path
) -> dict[str, Any]:
    """Nothing acknowledged lost or stored twice, chains whole, read models = a fresh fold,
    no 5xx but 503 with Retry-After, no request left without an answer."""
    outcomes = producers.outcomes
    assert not outcomes.bad, outcomes.bad[:5]
    assert not outcomes.transport_errors, outcomes.transport_errors
    check = asyncio.run(check_log(nats_url, frozenset(outcomes.acked)))
    check.assert_sound()
    differences = asyncio.run(read_model_differences(nats_url, served_models(data_dir), scratch))
    assert differences == [], differences
    return {
        "acked": check.acked,
        "found": check.events,
        "statuses": dict(sorted(outcomes.statuses.items())),
        "slowest_answer_s": round(producers.timeline.slowest, 2),
    }


@pytest.fixture
def nats_store(tmp_path: Path) -> Iterator[Callable[[], EmbeddedNatsServer]]:
    """A nats-server on a given store, started on demand, stopped at the end."""
    started: list[EmbeddedNatsServer] = []

    def start(store: Path = tmp_path / "nats-ext") -> EmbeddedNatsServer:
        server = EmbeddedNatsServer(store)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_the_proxy_delays_holds_and_cuts_what_passes() -> None:
    """What the partition tests rely on: nothing moves while dropped and nothing is lost by it,
    a cut closes every connection and refuses new ones until healed."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        echo = threading.Thread(target=_echo, args=(listener,), daemon=True)
        echo.start()
        with TcpProxy(listener.getsockname()[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                proxy.delay(0.2)
                started = time.monotonic()
                sock.sendall(b"slow")
                assert sock.recv(16) == b"slow"
                assert time.monotonic() - started >= 0.4  # a delay each way
                proxy.heal()
                proxy.drop()
                sock.sendall(b"held")
                sock.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    sock.recv(16)
                proxy.heal()
                sock.settimeout(5)
                assert sock.recv(16) == b"held"
                assert proxy.cut(refuse=True) == 1
                assert closed(sock)
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
                assert closed(refused)
            proxy.heal()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as again:
                again.sendall(b"back")
                assert again.recv(16) == b"back"
            assert (proxy.accepted, proxy.refused) == (2, 1)


def _echo(listener: socket.socket) -> None:
    """Echo every connection's bytes back, one connection at a time, until the listener closes."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, contextlib.suppress(ConnectionError):  # the proxy's cut resets it
            while data := conn.recv(4096):
                conn.sendall(data)


def closed(sock: socket.socket) -> bool:
    """Closed by the far side, with a FIN or a reset."""
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:
        return True


def test_a_frozen_nats_server_means_503_then_recovery_by_itself(
    serve: Callable[..., ServeProcess],
    nats_store: Callable[..., EmbeddedNatsServer],
    tmp_path: Path,
) -> None:
    process = serve()
    process.wait_ready()
    [server] = process.nats_servers()
    with Producers(process.http_url, "stop") as producers:
        producers.wait_acked(more_than=10)
        paused = time.monotonic()
        server.suspend()
        try:
            body = not_ready_while(process)
            time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused)))
        finally:
            server.resume()
        resumed = time.monotonic()
        recovery = recovered(process, producers, paused, resumed)
        acked = len(producers.outcomes.acked)
        producers.wait_acked(more_than=acked + 5)
    assert process.get("/readyz").status_code == 200
    assert recovery.unavailable > 0, "no write was refused while the nats-server was frozen"
    stop_serve(process)
    # The service's own nats-server stopped with it: the same store, read by one of our own.
    store = nats_store(process.data_dir / "nats")
    figures = assert_invariants(producers, store.url, process.data_dir, tmp_path)
    print(f"\nSIGSTOP {PAUSE_S:.0f} s: {recovery}, {figures}, readyz meanwhile: {body['reason']}")


@pytest.mark.slow
def test_a_slow_partitioned_or_cut_link_to_nats_means_503_then_recovery_by_itself(
    serve: Callable[..., ServeProcess],
    nats_store: Callable[..., EmbeddedNatsServer],
    tmp_path: Path,
) -> None:
    server = nats_store()
    with TcpProxy(server.port) as proxy:
        process = serve(INCIDENTS_NATS_URL=proxy.url, INCIDENTS_UNHEALTHY_AFTER=UNHEALTHY_AFTER)
        process.wait_ready()
        with Producers(process.http_url, "proxy") as producers:
            producers.wait_acked(more_than=10)
            # Delay: slower, still 2xx.
            proxy.delay(0.05)
            slow = time.monotonic()
            acked = len(producers.outcomes.acked)
            producers.wait_acked(more_than=acked + 3)
            proxy.heal()
            during_delay = {s for _, s, _, _ in producers.timeline.between(slow, time.monotonic())}
            # Drop: a partition, until the service gave the silent link up, then healed.
            dropped = time.monotonic()
            proxy.drop()
            try:
                drop_body = not_ready_while(process)
                noticed_s, unhealthy = noticed(process, dropped)
                # Given up: writes and readiness fail fast while it reconnects.
                gave_up_body = not_ready_while(process)
            finally:
                proxy.heal()
            drop = recovered(process, producers, dropped, time.monotonic())
            # Cut: every connection closed, new ones refused for a while, then let in again.
            accepted = proxy.accepted
            cut_at = time.monotonic()
            links = proxy.cut(refuse=True)
            cut_body = not_ready_while(process)
            time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
            proxy.heal()
            cut = recovered(process, producers, cut_at, time.monotonic())
            acked = len(producers.outcomes.acked)
            producers.wait_acked(more_than=acked + 5)
        assert during_delay == {200}, during_delay
        assert unhealthy.json()["nats"]["connected"] is False, unhealthy.text
        assert gave_up_body["reason"] == NOT_CONNECTED, gave_up_body
        assert drop.unavailable > 0 and cut.unavailable > 0, (drop, cut)
        assert links >= 2, "the service and its NATS intake each had a connection cut"
        assert proxy.accepted > accepted, "nothing reconnected through the proxy"
        reconnects = stop_serve(process)
    figures = assert_invariants(producers, server.url, process.data_dir, tmp_path)
    print(
        f"\ndrop: {drop}, dead link noticed after {noticed_s:.1f} s "
        f"(readyz: {drop_body['reason']}); "
        f"cut {CUT_S:.0f} s: {cut} (readyz: {cut_body['reason']}); {reconnects}; {figures}"
    )
