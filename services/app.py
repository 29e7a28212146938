"""Composition root: turns a Config into running parts, started and stopped in order.

nats-server (embedded unless INCIDENTS_NATS_URL) -> connection -> stream -> store, handler,
correlator, intake -> HTTP API (uvicorn) and NATS intake (faststream). `running()` is the one
place that starts and stops things, so a start-up that fails half way still stops whatever it
had started (an embedded nats-server above all).
"""

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

import duckdb
import msgspec
import nats
import nats.errors
import uvicorn
from nats.aio.client import Client as NATS

from events.policy import load_policy
from events.store import EventStore, StreamSettings, ensure_stream
from events.tasks import stop
from projections.database import open_database
from projections.projector import Projector
from projections.replay import live_path
from services.api import create_app
from services.auth import Tokens, is_loopback
from services.config import Config, ConfigError
from services.correlation import Correlator
from services.handler import Clock, CommandHandler, utc_now
from services.intake import Intake
from services.nats_intake import create_broker
from services.natsserver import EmbeddedNatsServer
from services.replay import LiveModels

log = logging.getLogger("incidents")


class Service(msgspec.Struct, frozen=True, kw_only=True):
    config: Config
    nats_url: str
    http_url: str
    server: EmbeddedNatsServer | None
    nc: NATS
    store: EventStore
    handler: CommandHandler
    intake: Intake
    models: LiveModels

    @property
    def projector(self) -> Projector:
        return self.models.reader.projector

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.models.reader.con


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


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: signals belong to `serve`, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    # Bound here, not by uvicorn, so a taken port is an OSError we report (uvicorn would exit).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it small answers wait ~40 ms for delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def check_exposure(config: Config, tokens: Tokens) -> None:
    if not tokens.enabled and not is_loopback(config.http_host):
        raise ConfigError(
            f"INCIDENTS_HTTP={config.http_host}:{config.http_port}: without "
            "INCIDENTS_TOKENS_FILE the service only listens on loopback (127.0.0.1 or ::1)"
        )


@asynccontextmanager
async def running(config: Config, clock: Clock = utc_now) -> AsyncIterator[Service]:
    tokens = Tokens.load(config.tokens_file)
    check_exposure(config, tokens)
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
        stack.push_async_callback(_quietly, nc.close, "the NATS connection")
        changed = await ensure_stream(nc, stream_settings(config))
        if changed:
            log.warning("stream %s updated: %s", config.stream, changed)
        store = EventStore(nc, config.stream)
        handler = CommandHandler(store, clock)
        intake = Intake(handler, Correlator(store, handler))
        log.info(
            "stream %s ready (retention %ss, replicas %s), last sequence %s",
            config.stream,
            int(config.retention_s),
            config.replicas,
            await store.last_seq(),
        )

        executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="incidents-read")
        stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        models = LiveModels.open(
            config.data_dir,
            store,
            policy=load_policy(config.policy_file),
            clock=clock,
            executor=executor,
        )
        stack.push_async_callback(models.close)
        log.info(
            "projector on %s from checkpoint %s",
            live_path(config.data_dir),
            models.reader.projector.checkpoint,
        )

        broker = create_broker(url.split(","), intake, clock)
        await broker.start()
        stack.push_async_callback(_quietly, broker.stop, "the NATS intake")

        sock = stack.enter_context(_listen(config.http_host, config.http_port))
        http = _EmbeddedUvicorn(
            uvicorn.Config(
                create_app(intake, tokens, clock, models, store),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        serving = asyncio.create_task(http.serve(sockets=[sock]))
        stack.push_async_callback(_stop_http, http, serving)
        while not http.started:
            if serving.done():
                serving.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        http_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("HTTP API %s (OpenAPI at %s/schema), NATS intake on intake.>", http_url, http_url)
        yield Service(
            config=config,
            nats_url=url,
            http_url=http_url,
            server=server,
            nc=nc,
            store=store,
            handler=handler,
            intake=intake,
            models=models,
        )


async def _quietly(close: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await close()
    except (OSError, nats.errors.Error) as exc:  # the server went away first: nothing to flush
        log.warning("closing %s: %r", what, exc)


async def _stop_http(http: uvicorn.Server, serving: "asyncio.Task[None]") -> None:
    http.should_exit = True
    await serving


async def project(config: Config, until_caught_up: bool = False) -> int:
    """Run only the projector against an existing NATS (scale-out replica, or a batch catch-up).

    Returns the checkpoint reached; with `until_caught_up` it stops at the stream's end as of
    start, else it follows the log until SIGINT/SIGTERM.
    """
    if config.nats_url is None:
        raise ConfigError("INCIDENTS_NATS_URL: `incidents project` joins an existing NATS")
    nc = await connect(config.nats_url, name="incidents-projector")
    con = open_database(live_path(config.data_dir))
    try:
        store = EventStore(nc, config.stream)
        projector = Projector(con, store)
        target = await store.last_seq()
        following = asyncio.create_task(projector.run(), name="projector")
        try:
            if until_caught_up:
                await projector.wait(target, timeout=3600)
            else:
                await _until_signalled()
        finally:
            await stop(following)
        return projector.checkpoint
    finally:
        con.close()
        await _quietly(nc.close, "the NATS connection")


async def _until_signalled() -> None:
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    try:
        await signalled.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop everything in reverse order."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    try:
        async with running(config) as service:
            log.info(
                "incidents ready: %s, nats %s, data %s",
                service.http_url,
                service.nats_url,
                config.data_dir,
            )
            await signalled.wait()
            log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
