"""Shared fixtures: a real nats-server per test on a free loopback port, store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import nats
import psutil
import pytest
from nats.aio.client import Client as NATS
from serve_process import ServeProcess
from tests_support import TOKENS

from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from services.auth import token_entry
from services.bootstrap import Service, running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A started server; tests may kill() and start() it again on the same store and port."""
    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNatsServer) -> str:
    return nats_server.url


def nats_server_processes(store_dir: Path) -> list[psutil.Process]:
    """Live nats-server processes whose command line mentions `store_dir`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "nats-server" and any(str(store_dir) in arg for arg in cmdline):
            found.append(proc)
    return found


@pytest.fixture
def find_nats_processes() -> Callable[[Path], list[psutil.Process]]:
    return nats_server_processes


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url, max_reconnect_attempts=2, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def store(nc: NATS) -> EventStore:
    await ensure_stream(nc, StreamSettings())
    return EventStore(nc)


@pytest.fixture
async def service(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    """The whole service in this process (HTTP on a free port) over the test's nats-server."""
    config = Config(nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0)
    async with running(config) as started:
        yield started


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as client:
        yield client


@pytest.fixture
async def guarded(nats_server: EmbeddedNatsServer, tmp_path: Path) -> AsyncIterator[Service]:
    """The service with a tokens file holding one token per role (`tests_support.TOKENS`)."""
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    config = Config(
        nats_url=nats_server.url, data_dir=tmp_path / "var", http_port=0, tokens_file=tokens_file
    )
    async with running(config) as service:
        yield service


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start `incidents serve` children on the test's data dir; all are killed at the end."""
    started: list[ServeProcess] = []

    def start(**env: str) -> ServeProcess:
        process = ServeProcess(tmp_path / "var", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
