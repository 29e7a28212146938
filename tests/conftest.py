"""Shared fixtures: a real nats-server per test on a free loopback port, store in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

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
