"""The users of deploy/nats/nats.conf (compose.yaml's cluster) on a real nats-server: the
producer reaches only its own intake subjects and its replies; the service everything."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from deploy_support import PASSWORDS, deploy_users_server
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

SERVICE, PRODUCER = PASSWORDS["INCIDENTS_NATS_PASSWORD"], PASSWORDS["PRODUCER_NATS_PASSWORD"]


@pytest.fixture
def deploy_users(tmp_path: Path) -> Iterator[str]:
    with deploy_users_server(tmp_path) as address:
        yield address


async def _connect(url: str, errors: list[str] | None = None, inbox: str = "_INBOX") -> NATS:
    async def remember(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc).lower())

    for _ in range(100):  # the server may still be starting
        try:
            return await nats.connect(
                url, error_cb=remember, allow_reconnect=False, inbox_prefix=inbox
            )
        except (OSError, nats.errors.NoServersError):
            await asyncio.sleep(0.05)
    raise AssertionError(f"no nats-server at {url}")


async def _request_when_answered(nc: NATS, subject: str) -> Msg:
    """A request, retried while the server has not yet seen the responder's interest (a loaded
    machine can answer "no responders" right after the subscription was flushed)."""
    for _ in range(50):
        try:
            return await nc.request(subject, b"{}", timeout=5)
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nobody answered on {subject}")


async def test_deploy_producer_reaches_only_its_intake(deploy_users: str) -> None:
    service = await _connect(f"nats://incidents:{SERVICE}@{deploy_users}")
    errors: list[str] = []
    # Its replies arrive on its own inbox prefix, the only subjects it may subscribe to.
    producer = await _connect(
        f"nats://producer:{PRODUCER}@{deploy_users}", errors, inbox="_INBOX_producer"
    )
    try:
        js = service.jetstream()
        await js.add_stream(name="INCIDENTS", subjects=["incidents.>"], max_age=3600)

        async def answer(msg: Msg) -> None:
            await msg.respond(b"stored " + msg.subject.encode())

        await service.subscribe("intake.*.events", cb=answer)
        await service.flush()
        reply = await _request_when_answered(producer, "intake.producer.events")
        assert reply.data == b"stored intake.producer.events"

        await producer.publish("incidents.INC-X.incident.declared", b"{}")
        shorter = msgspec.json.encode({"name": "INCIDENTS", "max_age": 1})
        for subject in ("intake.other.events", "$JS.API.STREAM.UPDATE.INCIDENTS"):
            with pytest.raises(nats.errors.TimeoutError):
                await producer.request(subject, shorter, timeout=0.5)
        await asyncio.sleep(0.3)
        for subject in ("incidents.inc-x.incident.declared", "$js.api.stream.update.incidents"):
            assert any(f'publish to "{subject}"' in e for e in errors), errors
        info = await js.stream_info("INCIDENTS")
        assert info.state.messages == 0
        assert info.config.max_age == 3600
    finally:
        await producer.close()
        await service.close()
