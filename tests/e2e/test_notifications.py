"""The notifier end to end: the whole service (real nats-server, DuckDB, HTTP) delivering to a
real local HTTP receiver, in the Slack and generic JSON formats, recorded in the log, once per
obligation across a restart of the service and an outage of the receiver."""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from receivers import Receiver, eventually
from tests_support import T0

from events.commands import ChangeSeverity
from events.schema import Severity, Source
from events.store import EventStore
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer
from services.write.handler import Accepted, CommandHandler

SLACK_SECRET = "T0000/B0000/slacksecretXYZ"
HOOK_SECRET = "hooksecretABC"
BASE_URL = "https://incidents.example.com"


class Clock:
    """The only fake: `now` for the service, moved by the test; `broken` makes it raise."""

    def __init__(self) -> None:
        self.now = T0
        self.broken = False

    def __call__(self) -> datetime:
        if self.broken:
            raise RuntimeError("clock unplugged by the test")
        return self.now


def write_policy(path: Path, receiver: Receiver) -> Path:
    path.write_text(
        f"""
[notifications]
base_url = "{BASE_URL}"
check_every = "100ms"
retry_first = "100ms"
retry_max = "400ms"

[[notifications.routes]]
name = "incidents-channel"
kind = "slack"
url = "{receiver.url}/services/{SLACK_SECRET}"
target = "#incidents"
severities = ["P0", "P1"]

[[notifications.routes]]
name = "ops-webhook"
kind = "webhook"
url = "{receiver.url}/hooks/{HOOK_SECRET}"
target = "ops tooling"
"""
    )
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Config]:
    receiver = Receiver()
    yield Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        policy_file=write_policy(tmp_path / "policy.toml", receiver),
    )


def receiver_of(config: Config) -> Receiver:
    """The receiver the policy names (its port is in the route URLs)."""
    assert config.policy_file is not None
    text = config.policy_file.read_text()
    port = int(text.split("http://127.0.0.1:")[1].split("/")[0])
    return Receiver(port)


@contextlib.asynccontextmanager
async def client_of(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as client:
        yield client


async def declare(http: httpx.AsyncClient, severity: str, title: str = "Checkout 5xx") -> str:
    body = {"title": title, "severity": severity, "services": ["checkout"]}
    response = await http.post("/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["incident_id"]
    return incident_id


def by_route(receiver: Receiver, part: str) -> list[dict[str, Any]]:
    """Bodies taken on the route whose URL path holds `part`, with their Idempotency-Key."""
    return [
        {**r.json(), "_key": r.headers["idempotency-key"]} for r in receiver.taken if part in r.path
    ]


def webhook(receiver: Receiver, incident_id: str, obligation: str) -> list[dict[str, Any]]:
    return [
        b
        for b in by_route(receiver, HOOK_SECRET)
        if b["incident"]["incident_id"] == incident_id and b["obligation"] == obligation
    ]


def slack(receiver: Receiver, incident_id: str) -> list[dict[str, Any]]:
    return [b for b in by_route(receiver, SLACK_SECRET) if incident_id in b["text"]]


async def notifications(http: httpx.AsyncClient, incident_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/incidents/{incident_id}/timeline")
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if e["type"] == "notification.sent"]


async def recorded_twice(http: httpx.AsyncClient, incident_id: str) -> list[dict[str, Any]]:
    """The incident's two `notification.sent` (one per route), once both are in the timeline."""
    recorded: list[dict[str, Any]] = []

    async def both() -> bool:
        recorded[:] = await notifications(http, incident_id)
        return len(recorded) == 2

    await eventually(both)
    return recorded


def assert_each_taken_once(receiver: Receiver) -> None:
    keys = Counter(r.headers["idempotency-key"] for r in receiver.taken)
    assert keys and max(keys.values()) == 1, keys


async def test_declaration_reaches_slack_and_the_webhook_and_is_recorded(
    config: Config, clock: Clock, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver = receiver_of(config)
    async with receiver.up(), running(config, clock) as service, client_of(service) as http:
        # The HTTP app configures logging at start-up, which drops pytest's handler: again.
        logging.getLogger().addHandler(caplog.handler)
        incident_id = await declare(http, "P1")
        await eventually(
            lambda: (
                bool(slack(receiver, incident_id))
                and bool(webhook(receiver, incident_id, "incident.declared"))
            )
        )

        [posted] = slack(receiver, incident_id)
        assert set(posted) == {"text", "blocks", "_key"}  # Slack's own format, nothing more
        assert (
            posted["text"] == f"[P1] {incident_id} Checkout 5xx: declared (application on checkout)"
        )
        header, what, facts, context = posted["blocks"]
        assert header["type"] == "header" and "[P1] Checkout 5xx" in header["text"]["text"]
        assert what["text"]["text"] == "declared (application on checkout)"
        shown = [f["text"] for f in facts["fields"]]
        assert f"*Incident*\n<{BASE_URL}/incidents/{incident_id}|{incident_id}>" in shown
        assert "*Severity*\nP1" in shown and "*Status*\ninvestigating" in shown
        assert (
            context["elements"][0]["text"] == f"incident.declared · delivery {posted['_key'][:16]}"
        )

        [body] = webhook(receiver, incident_id, "incident.declared")
        assert body["delivery_id"] == body["_key"]
        assert body["incident"]["title"] == "Checkout 5xx"
        assert body["incident"]["severity"] == "P1"
        assert body["incident"]["status"] == "investigating"
        assert body["event"]["type"] == "incident.declared"
        assert body["event"]["incident_id"] == incident_id
        assert body["due_at"] is None
        assert body["url"] == f"{BASE_URL}/incidents/{incident_id}"
        assert body["text"] == posted["text"]

        recorded = await recorded_twice(http, incident_id)
        by_name = {e["body"]["route"]: e for e in recorded}
        assert by_name["incidents-channel"]["body"]["target"] == "#incidents"
        assert by_name["incidents-channel"]["body"]["channel"] == "slack"
        assert by_name["incidents-channel"]["body"]["delivery_id"] == posted["_key"]
        assert by_name["ops-webhook"]["body"]["target"] == "ops tooling"
        assert by_name["ops-webhook"]["body"]["channel"] == "webhook"
        assert by_name["ops-webhook"]["body"]["delivery_id"] == body["delivery_id"]
        for event in recorded:
            assert event["body"]["obligation"] == "incident.declared"
            assert event["actor"] == "notifier"
            assert (event["principal"], event["principal_role"]) == ("notifier", "service")
            assert event["event_id"] == "~notify-" + event["body"]["delivery_id"]
            assert event["body"]["attempts"] == 1
        metrics = (await http.get("/metrics")).text
        assert 'incidents_notifications_sent_total{route="ops-webhook"}' in metrics

    # The route URLs are secrets: in no record of the log, in no log line.
    raw = b"".join(data for _, data in await store.records(">"))
    assert b"notification.sent" in raw
    assert SLACK_SECRET.encode() not in raw and HOOK_SECRET.encode() not in raw
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log
    assert SLACK_SECRET not in caplog.text and HOOK_SECRET not in caplog.text


async def test_routes_filter_by_severity(config: Config, clock: Clock) -> None:
    receiver = receiver_of(config)
    async with receiver.up(), running(config, clock) as service, client_of(service) as http:
        minor = await declare(http, "P3", "Slow search")
        major = await declare(http, "P0", "Payments down")
        # Each route reads the log in order: once it told the P0, it has passed the P3.
        await eventually(lambda: bool(slack(receiver, major)))
        await eventually(lambda: bool(webhook(receiver, major, "incident.declared")))
        assert slack(receiver, minor) == []
        assert webhook(receiver, minor, "incident.declared")


async def test_due_obligations_are_told_once_each(config: Config, clock: Clock) -> None:
    receiver = receiver_of(config)
    async with receiver.up(), running(config, clock) as service, client_of(service) as http:
        incident_id = await declare(http, "P1")  # P1: ack within 15 min, first comms within 15
        # 11 minutes in: the first comms is due in 4 minutes.
        clock.now = T0 + timedelta(minutes=11)
        await eventually(lambda: bool(webhook(receiver, incident_id, "next_update_due")))
        [reminder] = webhook(receiver, incident_id, "next_update_due")
        assert reminder["due_at"] == "2026-11-01T12:15:00Z"
        assert reminder["event"] is None
        assert "next update due (due 2026-11-01 12:15:00Z)" in reminder["text"]

        clock.now = T0 + timedelta(minutes=16)
        await eventually(lambda: bool(webhook(receiver, incident_id, "ack_overdue")))
        [overdue] = webhook(receiver, incident_id, "ack_overdue")
        assert overdue["due_at"] == "2026-11-01T12:15:00Z"
        assert overdue["details"]["kind"] == "ack"
        assert "not acknowledged in time" in overdue["text"]
        assert any(
            "ack_overdue" in b["blocks"][-1]["elements"][0]["text"]
            for b in slack(receiver, incident_id)
        )

        # Many more checks find the same obligations due: nothing is told twice.
        checks = service.notifier.checks
        await eventually(lambda: service.notifier.checks >= checks + 5)
        assert len(webhook(receiver, incident_id, "ack_overdue")) == 1
        assert len(webhook(receiver, incident_id, "next_update_due")) == 1
        assert_each_taken_once(receiver)

        # An acknowledgement stops it: a later breach of another kind is a new notice.
        response = await http.post(f"/v1/incidents/{incident_id}/ack", json={})
        assert response.status_code == 200, response.text
        recorded = await notifications(http, incident_id)
        assert {e["body"]["obligation"] for e in recorded} >= {"next_update_due", "ack_overdue"}


async def test_once_per_obligation_across_a_restart(
    config: Config, clock: Clock, store: EventStore
) -> None:
    receiver = receiver_of(config)
    async with receiver.up():
        async with running(config, clock) as service, client_of(service) as http:
            incident_id = await declare(http, "P1")
            clock.now = T0 + timedelta(minutes=16)
            await eventually(lambda: bool(webhook(receiver, incident_id, "ack_overdue")))
            await eventually(lambda: bool(webhook(receiver, incident_id, "incident.declared")))
            before = len(receiver.taken)

        # While the service is down, the log moves on: its route positions must not.
        raised = await CommandHandler(store, clock).handle(
            ChangeSeverity(
                incident_id=incident_id,
                event_id="raise-to-p0",
                occurred_at=T0 + timedelta(minutes=17),
                actor="alice@example.com",
                source=Source.CLI,
                to=Severity.P0,
                reason="all regions",
            )
        )
        assert isinstance(raised, Accepted), raised

        async with running(config, clock) as service, client_of(service) as http:
            await eventually(
                lambda: bool(webhook(receiver, incident_id, "incident.severity_changed"))
            )
            checks = service.notifier.checks
            await eventually(lambda: service.notifier.checks >= checks + 5)
            assert len(webhook(receiver, incident_id, "incident.declared")) == 1
            assert len(webhook(receiver, incident_id, "ack_overdue")) == 1
            assert len(slack(receiver, incident_id)) == len(
                {b["_key"] for b in slack(receiver, incident_id)}
            )
            assert len(receiver.taken) > before
            assert_each_taken_once(receiver)
            recorded = await notifications(http, incident_id)
            assert len(recorded) == len({e["body"]["delivery_id"] for e in recorded})
            assert {e["body"]["delivery_id"] for e in recorded} == {
                r.headers["idempotency-key"] for r in receiver.taken
            }


async def test_a_receiver_down_then_back_gets_everything_once(config: Config, clock: Clock) -> None:
    receiver = receiver_of(config)  # not up: connections are refused
    async with running(config, clock) as service, client_of(service) as http:
        incident_id = await declare(http, "P1")

        async def failing() -> bool:
            ready = (await http.get("/readyz")).json()
            routes = ready["notifier"]["routes"]
            return routes["ops-webhook"]["failing_since"] is not None

        await eventually(failing)
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ready"  # a receiver down is not the service failing
        shown = ready["notifier"]["routes"]["ops-webhook"]
        assert shown["kind"] == "webhook" and shown["target"] == "ops tooling"
        assert "ConnectError" in shown["last_error"]
        assert HOOK_SECRET not in str(ready) and SLACK_SECRET not in str(ready)

        receiver.answer = 503  # up, but refusing
        async with receiver.up():
            await eventually(lambda: len(receiver.requests) >= 2)
            receiver.answer = 200
            await eventually(
                lambda: (
                    bool(slack(receiver, incident_id))
                    and bool(webhook(receiver, incident_id, "incident.declared"))
                )
            )
            assert_each_taken_once(receiver)
            recorded = await recorded_twice(http, incident_id)
            assert all(e["body"]["attempts"] > 1 for e in recorded)
            ready = (await http.get("/readyz")).json()
            assert ready["notifier"]["routes"]["ops-webhook"]["failing_since"] is None
            assert ready["notifier"]["routes"]["ops-webhook"]["delivered"] == 1


async def test_a_failed_notifier_shows_in_readyz_until_it_runs_again(
    config: Config, clock: Clock
) -> None:
    async with running(config, clock) as service, client_of(service) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["notifier"]["failure"] is None

        clock.broken = True  # the check of due obligations now fails
        await eventually(lambda: answers(http, 503))
        body = (await http.get("/readyz")).json()
        assert body["status"] == "failed"
        assert body["reason"].startswith("notifier failed (")
        assert "clock unplugged by the test" in body["reason"]

        clock.broken = False
        await eventually(lambda: answers(http, 200))
        assert service.notifier.restarts >= 1


async def answers(http: httpx.AsyncClient, code: int) -> bool:
    return (await http.get("/readyz")).status_code == code


async def test_the_notifier_rides_out_a_nats_server_restart(
    config: Config, clock: Clock, nats_server: EmbeddedNatsServer
) -> None:
    receiver = receiver_of(config)
    async with receiver.up(), running(config, clock) as service, client_of(service) as http:
        before = await declare(http, "P1")
        await eventually(lambda: bool(webhook(receiver, before, "incident.declared")))
        nats_server.kill()
        await asyncio.to_thread(nats_server.start)

        async def declared() -> bool:
            body = {"title": "After the restart", "severity": "P1"}
            response = await http.post("/v1/incidents", json=body)
            if response.status_code == 201:
                after.append(response.json()["incident_id"])
            return bool(after)

        after: list[str] = []
        await eventually(declared)
        await eventually(lambda: bool(webhook(receiver, after[0], "incident.declared")))
        assert len(webhook(receiver, before, "incident.declared")) == 1
        assert_each_taken_once(receiver)
