"""The embedded nats-server: real process, JetStream up, durable across a crash, no orphans."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import psutil
import pytest

from services.natsserver import EmbeddedNatsServer, NatsServerError

FindProcesses = Callable[[Path], list[psutil.Process]]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port with a listening socket on it for the duration of the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_gone(pid: int | None, store_dir: Path, find: FindProcesses) -> None:
    assert pid is not None
    assert not psutil.pid_exists(pid)  # reaped, not even a zombie
    assert find(store_dir) == []


async def test_starts_and_answers_jetstream(nats_server: EmbeddedNatsServer) -> None:
    assert nats_server.running
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().account_info()
    finally:
        await nc.close()
    assert info.streams == 0


def test_stop_leaves_no_process(tmp_path: Path, find_nats_processes: FindProcesses) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    pid = server.pid
    assert find_nats_processes(server.store_dir) != []

    server.stop()
    server.stop()  # idempotent

    assert not server.running
    assert server.pid is None
    assert_gone(pid, server.store_dir, find_nats_processes)


def test_context_manager_starts_and_stops(
    tmp_path: Path, find_nats_processes: FindProcesses
) -> None:
    with EmbeddedNatsServer(tmp_path / "nats") as server:
        assert server.running
        pid = server.pid
    assert_gone(pid, server.store_dir, find_nats_processes)


async def test_kill_then_start_keeps_stream_messages(nats_server: EmbeddedNatsServer) -> None:
    stream = f"T{uuid.uuid4().hex[:8]}"
    url_before = nats_server.url
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for n in range(3):
            await js.publish(f"{stream}.x", f"m{n}".encode())
    finally:
        await nc.close()

    nats_server.kill()
    assert not nats_server.running
    nats_server.start()

    assert nats_server.url == url_before
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    assert info.state.messages == 3


async def test_astart_is_ready_on_return(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats")
    await server.astart()
    try:
        nc = await nats.connect(server.url)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()
    finally:
        server.stop()


def test_start_on_taken_port_fails_with_log_tail_and_no_orphan(
    tmp_path: Path, held_port: int, find_nats_processes: FindProcesses
) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats", port=held_port)

    with pytest.raises(NatsServerError, match="address already in use"):
        server.start()

    assert not server.running
    assert find_nats_processes(server.store_dir) == []


def test_start_with_unusable_store_fails_with_log_tail_and_no_orphan(
    tmp_path: Path, find_nats_processes: FindProcesses
) -> None:
    store = tmp_path / "nats"
    store.mkdir()
    (store / "jetstream").write_text("not a directory")  # where nats-server keeps its data
    server = EmbeddedNatsServer(store)

    with pytest.raises(NatsServerError, match="storage directory is not a directory"):
        server.start()

    assert not server.running
    assert find_nats_processes(store) == []


def test_store_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    store.write_text("a file")

    with pytest.raises(NatsServerError, match="cannot prepare"):
        EmbeddedNatsServer(store).start()


def test_config_syncs_every_write(nats_server: EmbeddedNatsServer) -> None:
    config = nats_server.config_file.read_text()
    assert "sync_interval: always" in config
    assert f'listen: "127.0.0.1:{nats_server.port}"' in config


def test_config_without_sync_always(tmp_path: Path) -> None:
    with EmbeddedNatsServer(tmp_path / "nats", sync_always=False) as server:
        assert "sync_interval" not in server.config_file.read_text()
