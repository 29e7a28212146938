"""Composition root: turns a Config into running parts (nats-server, connection, stream, store).

`running()` is the one place that starts and stops things, in order, so a start-up that
fails half way still stops whatever it had started (an embedded nats-server above all).
"""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec
import nats
from nats.aio.client import Client as NATS

from events.store import EventStore, StreamSettings, ensure_stream
from services.config import Config
from services.natsserver import EmbeddedNatsServer

log = logging.getLogger("incidents")


class Service(msgspec.Struct, frozen=True, kw_only=True):
    config: Config
    nats_url: str
    server: EmbeddedNatsServer | None
    nc: NATS
    store: EventStore


def stream_settings(config: Config) -> StreamSettings:
    return StreamSettings(
        name=config.stream,
        retention_s=config.retention_s,
        replicas=config.replicas,
        duplicate_window_s=config.duplicate_window_s,
    )


async def connect(url: str, name: str = "incidents") -> NATS:
    return await nats.connect(
        servers=url.split(","),
        name=name,
        connect_timeout=5,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Service]:
    async with AsyncExitStack() as stack:
        server: EmbeddedNatsServer | None = None
        url = config.nats_url
        if url is None:
            server = EmbeddedNatsServer(config.nats_store_dir, port=config.nats_port)
            stack.callback(server.stop)  # before start: a failed start is stopped too
            await server.astart()
            url = server.url
            log.info(
                "embedded nats-server %s (store %s, pid %s)", url, server.store_dir, server.pid
            )
        nc = await connect(url)
        stack.push_async_callback(nc.close)
        changed = await ensure_stream(nc, stream_settings(config))
        if changed:
            log.warning("stream %s updated: %s", config.stream, changed)
        store = EventStore(nc, config.stream)
        log.info(
            "stream %s ready (retention %ss, replicas %s), last sequence %s",
            config.stream,
            int(config.retention_s),
            config.replicas,
            await store.last_seq(),
        )
        yield Service(config=config, nats_url=url, server=server, nc=nc, store=store)


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop everything in reverse order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(config) as service:
            log.info("incidents ready: nats %s, data %s", service.nats_url, config.data_dir)
            await stop.wait()
            log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
