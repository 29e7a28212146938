"""The notifier's parts against real components: HTTP delivery with retries against a real
local receiver, the ledger of what was sent on a real log, the routes' durable consumers on a
real nats-server."""

import msgspec
import pytest
from nats.aio.client import Client as NATS
from receivers import Receiver
from tests_support import T0, declare

from events.notifications import Secret, parse_notifications
from events.schema import IncidentDeclared, NotificationSent, Source
from events.store import EventStore
from services.notify import consumers, deliver
from services.notify.ledger import PRINCIPAL, Ledger
from services.write.handler import Accepted, CommandHandler

SECRET = "hooks/T000/B000/s3cr3t"


def outbound(receiver: Receiver) -> deliver.Outbound:
    return deliver.Outbound(
        Secret(f"{receiver.url}/{SECRET}"),
        b'{"text":"hello"}',
        "d" * 64,
        (("Authorization", Secret("Bearer token")),),
    )


async def test_delivery_retries_until_the_receiver_takes_it() -> None:
    receiver = Receiver()
    receiver.answer = 503
    failures: list[tuple[int, str, float]] = []

    def failed(attempt: int, reason: str, pause_s: float) -> None:
        failures.append((attempt, reason, pause_s))
        if attempt == 2:
            receiver.answer = 200  # back after the second failure

    async with receiver.up(), deliver.client([]) as http:
        attempts = await deliver.deliver(
            http, outbound(receiver), deliver.Backoff(0.01, 0.05), failed
        )
    assert attempts == 3
    assert [r.status for r in receiver.requests] == [503, 503, 200]
    assert [(a, reason) for a, reason, _ in failures] == [
        (1, "HTTP 503 down"),
        (2, "HTTP 503 down"),
    ]
    assert 0.005 <= failures[0][2] <= 0.01 and 0.01 <= failures[1][2] <= 0.02
    taken = receiver.taken[0]
    assert taken.path == "/" + SECRET and taken.body == b'{"text":"hello"}'
    assert taken.headers["idempotency-key"] == "d" * 64
    assert taken.headers["content-type"] == "application/json"
    assert taken.headers["authorization"] == "Bearer token"


async def test_a_receiver_that_is_down_is_retried_and_never_named() -> None:
    receiver = Receiver()  # not up: connections are refused
    reasons: list[str] = []
    keepalives: list[int] = []

    def failed(attempt: int, reason: str, pause_s: float) -> None:
        reasons.append(reason)

    async def keepalive() -> None:
        keepalives.append(1)
        if len(keepalives) == 3:
            raise RuntimeError("enough")  # the test's way out of "for ever"

    async with deliver.client([]) as http:
        with pytest.raises(RuntimeError, match="enough"):
            await deliver.deliver(
                http, outbound(receiver), deliver.Backoff(0.01, 0.01), failed, keepalive
            )
    assert len(reasons) == 3
    assert all(r.startswith("ConnectError") for r in reasons), reasons
    assert not any(SECRET in r or str(receiver.port) + "/" in r for r in reasons)


async def test_the_ledger_finds_what_was_recorded_after_a_restart(store: EventStore) -> None:
    handler = CommandHandler(store)
    assert isinstance(await handler.handle(declare("INC-LEDGER")), Accepted)
    sent = NotificationSent(
        event_id="~notify-" + "a" * 64,
        incident_id="INC-LEDGER",
        occurred_at=T0,
        actor="notifier",
        source=Source.SYSTEM,
        principal=PRINCIPAL,
        obligation="incident.declared",
        route="ops",
        channel="webhook",
        target="ops tooling",
        delivery_id="a" * 64,
    )
    ledger = Ledger(store, handler)
    assert not await ledger.sent("INC-LEDGER", sent.event_id)
    await ledger.record(sent)
    assert await ledger.sent("INC-LEDGER", sent.event_id)
    # A new process knows only the log.
    restarted = Ledger(store, CommandHandler(store))
    assert await restarted.sent("INC-LEDGER", sent.event_id)
    assert not await restarted.sent("INC-LEDGER", "~notify-" + "b" * 64)
    # Recording again (a retry after a lost answer) stores nothing more.
    await restarted.record(sent)
    loaded = await store.load("INC-LEDGER")
    assert [type(s.event) for s in loaded.events] == [IncidentDeclared, NotificationSent]


async def test_route_consumers_keep_their_position_and_removed_ones_go(
    nc: NATS, store: EventStore
) -> None:
    js = nc.jetstream()
    [kept, removed] = parse_notifications(
        {
            "routes": [
                {"name": "kept", "kind": "webhook", "url": "http://127.0.0.1:9/a"},
                {"name": "removed", "kind": "webhook", "url": "http://127.0.0.1:9/b"},
            ]
        }
    ).routes
    handler = CommandHandler(store)
    await handler.handle(declare("INC-BEFORE"))  # before the consumer: not for it (NEW)
    for route in (kept, removed):
        await consumers.ensure(js, store.stream, route)
    await handler.handle(declare("INC-AFTER"))
    sub = await consumers.subscribe(js, store.stream, kept)
    [msg] = await sub.fetch(1, timeout=5)
    assert msg.subject == "incidents.INC-AFTER.incident.declared"
    await msg.ack_sync()
    await sub.unsubscribe()

    await consumers.ensure(js, store.stream, kept)  # at every start: the position stays
    info = await js.consumer_info(store.stream, "notify-kept")
    assert info.num_pending == 0 and info.delivered.stream_seq == msg.metadata.sequence.stream
    assert info.config.filter_subjects == [f"incidents.*.{kind}" for kind in sorted(kept.events)]
    await consumers.forget_removed(js, store.stream, (kept,))
    names = {c.name for c in await js.consumers_info(store.stream)}
    assert "notify-kept" in names and "notify-removed" not in names
    assert msgspec.json.decode(msg.data)["incident_id"] == "INC-AFTER"
