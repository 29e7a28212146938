"""`incidents serve` as a user runs it: starts its nats-server, stops it, never orphans it."""

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import psutil
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamInfo
from serve_process import ServeProcess as Serve

from services.natsserver import EmbeddedNatsServer

Finder = Callable[[Path], list[psutil.Process]]


async def _stream_names(url: str) -> list[str | None]:
    nc = await nats.connect(url)
    try:
        return [s.config.name async for s in _streams(nc)]
    finally:
        await nc.close()


async def _streams(nc: NATS) -> AsyncIterator[StreamInfo]:
    for info in await nc.jetstream().streams_info():
        yield info


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_nats_and_stops_it_cleanly(
    serve: Callable[..., Serve], find_nats_processes: Finder, signum: int
) -> None:
    process = serve()
    process.wait_for("incidents ready")
    store_dir = process.data_dir / "nats"
    [server] = find_nats_processes(store_dir.resolve())
    url = f"nats://127.0.0.1:{process.nats_port}"
    assert asyncio.run(_stream_names(url)) == ["INCIDENTS", "INCIDENTS_IDS"]
    assert "sync_interval: always" in (store_dir / "nats-server.conf").read_text()

    process.proc.send_signal(signum)
    code, output = process.finish()
    assert code == 0, output
    assert not psutil.pid_exists(server.pid) or server.status() == psutil.STATUS_ZOMBIE
    assert find_nats_processes(store_dir.resolve()) == []


def test_restart_resumes_on_the_same_store(serve: Callable[..., Serve]) -> None:
    first = serve()
    first.wait_for("incidents ready")
    url = f"nats://127.0.0.1:{first.nats_port}"

    async def publish() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().publish("retention.probe", b"x", stream="INCIDENTS")
        await nc.close()

    asyncio.run(publish())
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish()[0] == 0
    second = serve()
    assert "last sequence 1" in second.wait_for("last sequence")
    second.proc.send_signal(signal.SIGTERM)
    assert second.finish()[0] == 0


def test_sigkill_of_serve_takes_its_nats_server_along(
    serve: Callable[..., Serve], find_nats_processes: Finder
) -> None:
    process = serve()
    process.wait_for("incidents ready")
    store_dir = (process.data_dir / "nats").resolve()
    [server] = find_nats_processes(store_dir)
    process.proc.kill()
    process.proc.wait()
    server.wait(timeout=10)
    assert find_nats_processes(store_dir) == []


def test_failed_start_port_taken_leaves_no_orphan(
    serve: Callable[..., Serve], find_nats_processes: Finder
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        process = serve(INCIDENTS_NATS_PORT=str(port))
        code, output = process.finish()
    assert code == 1
    assert "address already in use" in output
    assert find_nats_processes((process.data_dir / "nats").resolve()) == []


def test_failed_start_after_nats_is_up_stops_it(
    serve: Callable[..., Serve], find_nats_processes: Finder
) -> None:
    # A single embedded server cannot hold a 3-replica stream: start-up fails past nats-server.
    process = serve(INCIDENTS_REPLICAS="3")
    code, output = process.finish()
    assert code == 1
    assert "cannot create stream INCIDENTS" in output
    assert find_nats_processes((process.data_dir / "nats").resolve()) == []


def test_bad_config_is_exit_2_with_the_variable_named(serve: Callable[..., Serve]) -> None:
    code, output = serve(INCIDENTS_RETENTION="ninety days").finish()
    assert code == 2
    assert "INCIDENTS_RETENTION" in output


def test_external_nats_url_starts_no_server(
    serve: Callable[..., Serve], nats_server: EmbeddedNatsServer, find_nats_processes: Finder
) -> None:
    process = serve(INCIDENTS_NATS_URL=nats_server.url)
    process.wait_for("incidents ready")
    assert not (process.data_dir / "nats").exists()
    assert asyncio.run(_stream_names(nats_server.url)) == ["INCIDENTS", "INCIDENTS_IDS"]
    process.proc.send_signal(signal.SIGTERM)
    assert process.finish()[0] == 0


def test_non_loopback_bind_without_tokens_is_refused(serve: Callable[..., Serve]) -> None:
    code, output = serve(INCIDENTS_HTTP="0.0.0.0:8080").finish()
    assert code == 2
    assert "loopback" in output
