"""Composition root: turns a Config into running parts, started and stopped in order.

data dir lock -> nats-server (embedded unless INCIDENTS_NATS_URL; supervised; with users when
tokens are on) -> connection -> stream -> store, handler, correlator, intake -> read models and
notifier (INCIDENTS_ROLE=all, not on an `api` replica) -> HTTP API (uvicorn) and NATS intake
(faststream). `running()` is the one place that starts and stops things, so a start-up that
fails half way still stops whatever it had started (an embedded nats-server above all).
"""

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

import duckdb
import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS

from events.policy import Policy, load_policy
from events.store import OUTAGES, EventStore
from events.stream import StreamSettings, ensure_stream
from projections.database import open_database
from projections.projector import Projector
from projections.rebuild import live_path
from projections.tasks import stop
from services import runtime
from services.api.app import create_app
from services.api.server import check_tls, serving
from services.auth import Tokens, is_loopback
from services.clock import Clock, utc_now
from services.config import Config, ConfigError, ServiceRole
from services.datadir import holding
from services.nats_intake import create_broker
from services.natsauth import SERVICE_INBOX, ServiceCredentials, embedded_auth
from services.natsserver import EmbeddedNatsServer
from services.natsurl import PING_INTERVAL_S, PINGS_UNANSWERED, redacted, target
from services.notify.notifier import Notifier
from services.readmodels import LiveModels, keep_running, supervise
from services.supervisor import LogHealth, Supervisor, one_line, quiet_errors
from services.write.correlation import Correlator
from services.write.handler import CommandHandler
from services.write.intake import Intake

log = logging.getLogger("incidents")
NO_READ_MODELS = "an INCIDENTS_ROLE=api replica keeps no read models and runs no notifier"
# How long a start waits for JetStream to answer: a cluster started at the same moment elects
# its meta leader first (compose starts everything at once).
JETSTREAM_WAIT_S: Final = 60.0


class Service(msgspec.Struct, frozen=True, kw_only=True):
    config: Config
    nats_url: str
    http_url: str
    server: EmbeddedNatsServer | None
    nc: NATS
    store: EventStore
    handler: CommandHandler
    intake: Intake
    # None on an INCIDENTS_ROLE=api replica; `models` and `notifier` say so when asked.
    read_models: LiveModels | None
    notifications: Notifier | None

    @property
    def models(self) -> LiveModels:
        if self.read_models is None:
            raise RuntimeError(NO_READ_MODELS)
        return self.read_models

    @property
    def notifier(self) -> Notifier:
        if self.notifications is None:
            raise RuntimeError(NO_READ_MODELS)
        return self.notifications

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


async def _stream_ready(nc: NATS, settings: StreamSettings) -> dict[str, tuple[Any, Any]]:
    """`ensure_stream`, once JetStream answers: an outage (no meta leader yet, a timeout) is
    waited out for up to `JETSTREAM_WAIT_S`, one log line per attempt; a refusal is not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JETSTREAM_WAIT_S
    while True:
        try:
            return await ensure_stream(nc, settings)
        except OUTAGES as exc:
            if loop.time() > deadline:
                raise
            log.warning("JetStream does not answer yet (%r); trying again in 1 s", exc)
            await asyncio.sleep(1)


async def connect(url: str, name: str = "incidents", health: LogHealth | None = None) -> NATS:
    """The service's connection: reconnects forever, one log line per error (not a traceback
    per attempt); its inboxes are out of every producer's sight (services/natsauth.py); the
    credentials of `url` hold for the servers the cluster announces too (services/natsurl.py).

    A link that went silent (a partition, a server frozen or gone without closing its sockets)
    is given up after 10 to 15 s (`PING_INTERVAL_S`, `PINGS_UNANSWERED`): then writes fail fast
    (503) instead of each waiting for its timeout, `/healthz` counts the outage, and the client
    tries the cluster's other servers. nats-py's default (pings 2 minutes apart) took 4 to 6
    minutes to notice (tests/faults/test_pauses.py)."""
    callbacks = health.callbacks() if health is not None else {"error_cb": quiet_errors(name)}
    nc = await nats.connect(
        **target(url).options(),
        name=name,
        connect_timeout=5,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=PINGS_UNANSWERED,
        inbox_prefix=SERVICE_INBOX,
        **callbacks,
    )
    if health is not None:
        health.nc = nc
    return nc


def embedded_server(config: Config, tokens: Tokens) -> EmbeddedNatsServer:
    """The embedded nats-server: open on loopback, or with users when tokens are on."""
    auth = None
    if tokens.enabled:
        auth = embedded_auth(ServiceCredentials.load_or_create(config.data_dir), tokens)
    return EmbeddedNatsServer(config.nats_store_dir, port=config.nats_port, auth=auth)


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
    tls = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    if tls:
        check_tls(*tls)  # before anything starts: a bad file is a configuration error
    async with AsyncExitStack() as stack:
        # Before anything touches the data dir: a second instance stops here, naming the first.
        stack.enter_context(holding(config.data_dir, "serve"))
        server: EmbeddedNatsServer | None = None
        supervisor: Supervisor | None = None
        url = client_url = config.nats_url
        if url is None:
            server = embedded_server(config, tokens)
            stack.callback(server.stop)  # before start: a failed start is stopped too
            await server.astart()
            url, client_url = server.url, server.client_url
            log.info(
                "embedded nats-server %s (store %s, pid %s%s)",
                redacted(url),
                server.store_dir,
                server.pid,
                ", NATS users from the tokens file" if server.auth else "",
            )
            supervisor = Supervisor(server)
            # Registered after server.stop, so it runs first: nothing restarts a server
            # that is being stopped.
            watching = asyncio.create_task(supervisor.run(), name="nats-server supervisor")
            stack.push_async_callback(stop, watching)
        assert client_url is not None
        health = LogHealth(config.unhealthy_after_s, supervisor)
        nc = await connect(client_url, health=health)
        stack.push_async_callback(_quietly, nc.close, "the NATS connection")
        changed = await _stream_ready(nc, stream_settings(config))
        if changed:
            log.warning("stream %s updated: %s", config.stream, changed)
        store = EventStore(nc, config.stream)
        handler = CommandHandler(store, clock)
        policy = load_policy(config.policy_file)
        intake = Intake(handler, Correlator(store, handler, policy), policy.severity_aliases)
        log.info(
            "stream %s ready (retention %ss, replicas %s), last sequence %s",
            config.stream,
            int(config.retention_s),
            config.replicas,
            await store.last_seq(),
        )

        models: LiveModels | None = None
        notifier: Notifier | None = None
        if config.role is ServiceRole.ALL:
            # Before the intakes open: the routes' consumers exist before anything new is
            # appended.
            models, notifier = await _read_side(stack, config, store, handler, policy, clock)
        else:
            log.info("INCIDENTS_ROLE=%s: no read models, no notifier", config.role.value)

        broker = create_broker(target(client_url), intake, clock, health)
        await broker.start()
        stack.push_async_callback(_quietly, broker.stop, "the NATS intake")

        app = create_app(intake, tokens, clock, models, store, config.allowed_hosts, policy)
        app.state.health = health  # /healthz
        app.state.notifier = notifier  # /readyz
        http_url = await stack.enter_async_context(
            serving(app, config.http_host, config.http_port, tls)
        )
        log.info("HTTP API %s (OpenAPI at %s/schema), NATS intake on intake.>", http_url, http_url)
        # Last: the CLI finds this service by it only once everything listens; first removed.
        endpoints = runtime.Endpoints(
            http_url=runtime.reachable(http_url),
            nats_url=runtime.without_credentials(url),
            nats_users=server is not None and server.auth is not None,
            stream=config.stream,
            pid=os.getpid(),
            started_at=utc_now(),  # the wall clock: when this process started, for people
        )
        stack.enter_context(runtime.published(config.data_dir, endpoints))
        yield Service(
            config=config,
            nats_url=url,
            http_url=http_url,
            server=server,
            nc=nc,
            store=store,
            handler=handler,
            intake=intake,
            read_models=models,
            notifications=notifier,
        )


async def _read_side(
    stack: AsyncExitStack,
    config: Config,
    store: EventStore,
    handler: CommandHandler,
    policy: Policy,
    clock: Clock,
) -> tuple[LiveModels, Notifier]:
    """The projector with its read models, and the notifier (which reads them), started on
    `stack`."""
    executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="incidents-read")
    stack.callback(executor.shutdown, wait=True, cancel_futures=True)
    models = LiveModels.open(
        config.data_dir,
        store,
        config.duckdb_memory_limit,
        policy=policy,
        clock=clock,
        executor=executor,
    )
    stack.push_async_callback(models.close)
    log.info(
        "projector on %s from checkpoint %s",
        live_path(config.data_dir),
        models.reader.projector.checkpoint,
    )
    notifier = Notifier(store, handler, models, policy, clock)
    stack.push_async_callback(notifier.close)
    await notifier.start()
    notifying = asyncio.create_task(
        keep_running(notifier, "notifier", describe=one_line), name="notifier"
    )
    stack.push_async_callback(stop, notifying)
    return models, notifier


async def _quietly(close: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await close()
    except (OSError, nats.errors.Error) as exc:  # the server went away first: nothing to flush
        log.warning("closing %s: %r", what, exc)


async def project(config: Config, until_caught_up: bool = False) -> int:
    """Run only the projector against an existing NATS (scale-out replica, or a batch catch-up).

    Returns the checkpoint reached; with `until_caught_up` it stops at the stream's end as of
    start, else it follows the log until SIGINT/SIGTERM.
    """
    if config.nats_url is None:
        raise ConfigError("INCIDENTS_NATS_URL: `incidents project` joins an existing NATS")
    with holding(config.data_dir, "project"):
        return await _project(config, until_caught_up)


async def _project(config: Config, until_caught_up: bool) -> int:
    assert config.nats_url is not None
    nc = await connect(config.nats_url, name="incidents-projector")
    con = open_database(live_path(config.data_dir), config.duckdb_memory_limit)
    try:
        store = EventStore(nc, config.stream)
        projector = Projector(con, store)
        target = await store.last_seq()
        following = asyncio.create_task(supervise(projector), name="projector")
        try:
            if until_caught_up:
                await projector.wait(target, timeout=3600)
            else:
                signalled = asyncio.Event()
                with _on_signals(signalled.set):
                    await signalled.wait()
        finally:
            await stop(following)
        return projector.checkpoint
    finally:
        con.close()
        await _quietly(nc.close, "the NATS connection")


@contextlib.contextmanager
def _on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """`handler` runs on SIGINT or SIGTERM while the block runs."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop everything in reverse order."""
    signalled = asyncio.Event()
    with _on_signals(signalled.set):
        async with running(config) as service:
            log.info(
                "incidents ready: %s, nats %s, data %s, role %s",
                service.http_url,
                redacted(service.nats_url),
                config.data_dir,
                config.role.value,
            )
            await signalled.wait()
            log.info("stopping")
