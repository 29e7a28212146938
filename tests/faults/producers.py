"""Producers for fault tests: each sends its deliveries one by one, retrying the same one (same
event ids, or the same Alertmanager group and fingerprints, whose ids the service derives)
until it is acknowledged, over HTTP or NATS request/reply, while the service is killed under it.

Eight kinds, as a real fleet would have them (README "HTTP API", "Alertmanager", "NATS"):
commands, single producer events, two batchers, two Alertmanagers over HTTP, and NATS intake of
events and of Alertmanager payloads. What they saw goes into an `Outcomes` (invariants.py).
"""

import asyncio
import copy
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import nats
import nats.errors
from invariants import Outcomes
from nats.aio.client import Client as NATS
from tests_support import producer_declared, producer_note

from services.api.app import RETRY_AFTER_S, STATUS
from services.errors import ErrorKind

FIXTURES: Final = Path(__file__).parents[1] / "fixtures"
TIMEOUT_S: Final = 10.0
# A request in flight when its nats-server dies is not failed by nats-py: it times out. Short,
# so a NATS producer is not idle for long after each kill (a retry is harmless: same ids).
NATS_TIMEOUT_S: Final = 4.0
# Shorter than the service's Retry-After: a storm's outages are short, and a producer that
# waits 2 s after every 503 would send little during the storm.
RETRY_PAUSE_S: Final = 0.2
# Between deliveries: enough load to catch the service mid-write, not enough to starve the
# restarts of CPU on a 2-core machine.
PACE_S: Final = 0.03
NOTES_PER_INCIDENT: Final = 6


@dataclass(frozen=True)
class Delivery:
    """One request, sent until acknowledged: an HTTP POST to `route`, or a NATS request on it."""

    route: str
    body: object
    over_nats: bool = False
    # The ids the body names; empty when the service derives them (Alertmanager).
    sent_ids: tuple[str, ...] = ()


Workload = Callable[[str], Iterator[Delivery]]


@dataclass
class Tally:
    """How the producers fared: deliveries acknowledged, requests sent, and what was wrong."""

    delivered: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    # The NATS client's own errors while its server is away (it reconnects by itself).
    client_errors: Counter[str] = field(default_factory=Counter)
    # A valid delivery refused with a 4xx, or acknowledged with other ids than it sent.
    wrong: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return sum(self.requests.values()) - sum(self.delivered.values())


def commands(name: str) -> Iterator[Delivery]:
    """Command routes: declare, acknowledge, notes; every command with its own event id."""
    for k in range(1_000_000):
        incident_id = f"INC-{name}-{k}"
        declare = {"incident_id": incident_id, "title": f"{name} {k}", "severity": "P3"}
        yield _command("/v1/incidents", declare, f"{incident_id}-d")
        yield _command(f"/v1/incidents/{incident_id}/ack", {}, f"{incident_id}-a")
        for n in range(NOTES_PER_INCIDENT):
            note = {"text": f"note {n}"}
            yield _command(f"/v1/incidents/{incident_id}/notes", note, f"{incident_id}-n{n}")


def _command(route: str, body: Mapping[str, object], event_id: str) -> Delivery:
    return Delivery(route, {**body, "event_id": event_id}, sent_ids=(event_id,))


def singles(name: str, over_nats: bool = False) -> Iterator[Delivery]:
    """Producer events one at a time: a declaration, then notes on it."""
    route = f"intake.{name}.events" if over_nats else "/v1/events"
    for k in range(1_000_000):
        for event in _incident_events(name, k):
            yield Delivery(route, event, over_nats, (event["event_id"],))


def batches(name: str, over_nats: bool = False) -> Iterator[Delivery]:
    """Producer events as batches: each a new incident's declaration with its notes, plus
    notes on the incident before (one batch spans two incidents)."""
    route = f"intake.{name}.events" if over_nats else "/v1/events"
    for k in range(1_000_000):
        events = _incident_events(name, k)
        if k:
            events.append(producer_note(f"INC-{name}-{k - 1}", f"{name}-{k - 1}-late", "later"))
        yield Delivery(route, events, over_nats, tuple(e["event_id"] for e in events))


def nats_events(name: str) -> Iterator[Delivery]:
    """Singles and batches on the producer's NATS subject, alternating."""
    for one, many in zip(singles(f"{name}s", True), batches(f"{name}b", True), strict=True):
        yield one
        yield many


def _incident_events(name: str, k: int) -> list[dict[str, Any]]:
    incident_id = f"INC-{name}-{k}"
    declared = producer_declared(incident_id, f"{incident_id}-d")
    notes = [producer_note(incident_id, f"{incident_id}-n{n}") for n in range(3)]
    return [declared, *notes]


def alertmanager(name: str, over_nats: bool = False) -> Iterator[Delivery]:
    """Alertmanager 0.25 deliveries (the fixtures), each group firing then resolved, with the
    group key and fingerprints of the producer's own alerts."""
    route = f"intake.{name}.alertmanager" if over_nats else "/v1/webhooks/alertmanager"
    firing, resolved = _fixture("alertmanager_firing.json"), _fixture("alertmanager_resolved.json")
    for k in range(1_000_000):
        yield Delivery(route, _alert_group(firing, name, k), over_nats)
        yield Delivery(route, _alert_group(resolved, name, k), over_nats)


def _fixture(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / file).read_text())
    return loaded


def _alert_group(payload: dict[str, Any], name: str, k: int) -> dict[str, Any]:
    group = copy.deepcopy(payload)
    alertname = f"Storm-{name}-{k}"
    group["groupKey"] = f'{{}}:{{alertname="{alertname}", service="checkout"}}'
    group["groupLabels"]["alertname"] = group["commonLabels"]["alertname"] = alertname
    for n, alert in enumerate(group["alerts"]):
        alert["labels"]["alertname"] = alertname
        alert["fingerprint"] = hashlib.sha256(f"{name}/{k}/{n}".encode()).hexdigest()[:16]
    return group


# The fleet of a kill storm: eight producers, each name its own ids' prefix.
FLEET: Final[dict[str, Workload]] = {
    "cmd": commands,
    "one": singles,
    "bat": batches,
    "bulk": batches,
    "am": alertmanager,
    "amx": alertmanager,
    "nev": nats_events,
    "nam": lambda name: alertmanager(name, over_nats=True),
}


class Producers:
    """The fleet, in a thread of its own (an event loop with one task per producer), so the
    test's thread is free to kill and restart processes."""

    def __init__(self, http_url: str, nats_url: str, fleet: dict[str, Workload]) -> None:
        self.http_url = http_url
        self.nats_url = nats_url
        self.fleet = fleet
        self.outcomes = Outcomes()
        self.tally = Tally()
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Let each producer get its delivery in flight acknowledged, then stop."""
        self._stopping.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"producers still waiting after {timeout}s"
        if self._failure is not None:
            raise self._failure

    def abandon(self) -> None:
        """Stop at once, acknowledged or not (the test failed: nothing will answer them)."""
        self._stopping.set()
        self._abandoned.set()

    async def _run(self) -> None:
        try:
            nc = await self._connected()
            try:
                async with httpx.AsyncClient(base_url=self.http_url, timeout=TIMEOUT_S) as http:
                    send = _Sender(http, nc, self.outcomes, self.tally, self._abandoned)
                    await asyncio.gather(
                        *(self._produce(send, name, w(name)) for name, w in self.fleet.items())
                    )
            finally:
                await nc.close()
        except BaseException as exc:  # the test's thread raises it from finish()
            self._failure = exc

    async def _client_error(self, exc: Exception) -> None:
        self.tally.client_errors[type(exc).__name__] += 1

    async def _produce(self, send: "_Sender", name: str, deliveries: Iterator[Delivery]) -> None:
        for delivery in deliveries:
            if self._stopping.is_set():
                return
            await send.until_acknowledged(name, delivery)
            await asyncio.sleep(PACE_S)

    async def _connected(self) -> NATS:
        """A client that keeps reconnecting for ever: its server is killed again and again."""
        while not self._abandoned.is_set():
            try:
                return await nats.connect(
                    self.nats_url,
                    error_cb=self._client_error,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    allow_reconnect=True,
                )
            except (OSError, TimeoutError, nats.errors.Error):
                await asyncio.sleep(RETRY_PAUSE_S)
        raise RuntimeError(f"abandoned before {self.nats_url} answered")


class _Event(msgspec.Struct):
    event_id: str


class _Answer(msgspec.Struct):
    events: list[_Event] = []
    error: str | None = None


_answer: Final = msgspec.json.Decoder(_Answer)


@dataclass
class _Sender:
    http: httpx.AsyncClient
    nc: NATS
    outcomes: Outcomes
    tally: Tally
    abandoned: threading.Event

    async def until_acknowledged(self, name: str, delivery: Delivery) -> None:
        what = f"{name} {delivery.route} {delivery.sent_ids[:1]}"
        while not self.abandoned.is_set():
            self.tally.requests[name] += 1
            try:
                response = await self._send(delivery)
            except (httpx.TransportError, nats.errors.Error, TimeoutError) as exc:
                self.outcomes.failed(exc)
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            ids = self._acknowledged(response)
            if self.outcomes.answered(what, response, ids):
                self.tally.delivered[name] += 1
                if delivery.sent_ids and set(ids) != set(delivery.sent_ids):
                    self.tally.wrong.append(f"{what}: acknowledged {ids}")
                return
            if response.status_code < 500:
                # A valid delivery has no reason to be refused: say so, do not hang on it.
                self.tally.wrong.append(f"{what}: {response.status_code} {response.text[:300]}")
                return
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _send(self, delivery: Delivery) -> httpx.Response:
        if not delivery.over_nats:
            return await self.http.post(delivery.route, json=delivery.body)
        reply = await self.nc.request(
            delivery.route, msgspec.json.encode(delivery.body), timeout=NATS_TIMEOUT_S
        )
        return _as_http(reply.data)

    @staticmethod
    def _acknowledged(response: httpx.Response) -> tuple[str, ...]:
        if not response.is_success:
            return ()
        return tuple(e.event_id for e in _answer.decode(response.content).events)


def _as_http(reply: bytes) -> httpx.Response:
    """A NATS reply as the HTTP answer its body gets (the same body, README "NATS"), so one
    tally judges both: an `unavailable` reply is the 503 with Retry-After a client retries."""
    kind = _answer.decode(reply).error
    status = 200 if kind is None else STATUS[ErrorKind(kind)]
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return httpx.Response(status, headers=headers, content=reply)
