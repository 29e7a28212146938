"""`incidents serve` in a child process, with its log lines, its HTTP URL and its nats-server."""

import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from tests_support import INCIDENTS

from services.natsserver import free_port


class ServeProcess:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.nats_port = int(env.get("INCIDENTS_NATS_PORT") or free_port())
        environ = {
            **os.environ,
            "INCIDENTS_DATA_DIR": str(data_dir),
            "INCIDENTS_NATS_PORT": str(self.nats_port),
            "INCIDENTS_HTTP": "127.0.0.1:0",
            **env,
        }
        if "INCIDENTS_NATS_URL" not in env:
            environ.pop("INCIDENTS_NATS_URL", None)
        self.proc = subprocess.Popen(
            [INCIDENTS, "serve"], env=environ, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        self.lines: list[str] = []
        self.http_url = ""
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as lines:
            for raw in lines:
                self._queue.put(raw.decode())
        self._queue.put("")

    def wait_ready(self, timeout: float = 30.0) -> None:
        line = self.wait_for("incidents ready: http", timeout)
        found = re.search(r"incidents ready: (http://[^,]+),", line)
        assert found, line
        self.http_url = found.group(1)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not seen; output:\n{''.join(self.lines)}")

    def drain(self) -> list[str]:
        """The lines written since the last call (without waiting)."""
        new: list[str] = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line:
                new.append(line)
        self.lines.extend(new)
        return new

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        self.proc.wait(timeout)
        while (line := self._queue.get(timeout=timeout)) != "":
            self.lines.append(line)
        return self.proc.returncode, "".join(self.lines)

    def nats_servers(self) -> list[psutil.Process]:
        """The live nats-server processes on this service's store."""
        store = str((self.data_dir / "nats").resolve())
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == "nats-server" and any(store in arg for arg in cmdline):
                found.append(proc)
        return found

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.http_url + path, timeout=10)

    def post(self, path: str, body: object) -> httpx.Response:
        return httpx.post(self.http_url + path, json=body, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def eventually(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Wait until `check()` holds; returns the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(every)
    return time.monotonic() - start


def hold_port(port: int, timeout: float = 5.0) -> socket.socket:
    """Listen on `port` as soon as it is free (a nats-server that just died held it)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        sock.listen()
        return sock
