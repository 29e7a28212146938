"""Keeping the log reachable: the embedded nats-server restarted when it dies, and how long
the service has been without NATS, for `/healthz`.

`Supervisor.run` watches the embedded nats-server and restarts it on the same store and port
with a growing pause (1 s, 2 s, 4 s... at most 30 s) until it is back; each failed attempt is
one log line. It also watches the store's file system: while it is full (less than
`LOW_SPACE_B` free, or the server logged that it could not write its store for lack of space)
`storage_fault` says so (writes answer 503 naming it, `/readyz` is not ready), and once
`SPACE_BACK_B` are free it restarts the server, which refuses every write to a stream after one
failed until it restarts.

`LogHealth` follows the service's NATS connection (its callbacks are given to `nats.connect`):
`/healthz` fails once the log has been unreachable for longer than `INCIDENTS_UNHEALTHY_AFTER`,
so an outer supervisor can act. NATS client errors are logged as one line, each distinct one at
most once a minute, never as a traceback per reconnect attempt.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client as NATS

from services.errors import out_of_space
from services.natsserver import SERVER_LOG_PREFIX, EmbeddedNatsServer, NatsServerError

log = logging.getLogger("incidents")

FIRST_PAUSE_S: Final = 1.0
MAX_PAUSE_S: Final = 30.0
_WATCH_EVERY_S: Final = 0.2
_REPEAT_AFTER_S: Final = 60.0
# Full below 1 MiB free (a request body may be that large), free again from 4 MiB (an edge
# that small writes fill again at once is not worth a restart).
LOW_SPACE_B: Final = 1 << 20
SPACE_BACK_B: Final = 4 << 20

Clock = Callable[[], float]
ErrorCallback = Callable[[Exception], Awaitable[None]]


def one_line(exc: BaseException) -> str:
    """An error as one line: its first line, and the last line it quotes (a log tail's)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return repr(exc)
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0]} {SERVER_LOG_PREFIX.sub('', lines[-1])}"


def quiet_errors(what: str, clock: Clock = time.monotonic) -> ErrorCallback:
    """A nats-py `error_cb` that logs one line per distinct error, at most once a minute (the
    default logs a traceback for every reconnect attempt, twice a second)."""
    last: dict[str, float] = {}

    async def on_error(exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        now = clock()
        if now - last.get(text, -_REPEAT_AFTER_S) >= _REPEAT_AFTER_S:
            last[text] = now
            log.warning("%s: %s", what, text)

    return on_error


class Supervisor:
    """Restarts an embedded nats-server that exited, on the same store and port."""

    def __init__(
        self,
        server: EmbeddedNatsServer,
        first_pause_s: float = FIRST_PAUSE_S,
        max_pause_s: float = MAX_PAUSE_S,
    ) -> None:
        self.server = server
        self.first_pause_s = first_pause_s
        self.max_pause_s = max_pause_s
        self.restarts = 0
        self.failed_attempts = 0
        self.last_exit: int | None = None
        self.last_failure: str | None = None
        self.storage_fault: str | None = None  # why the server cannot store events now

    @property
    def running(self) -> bool:
        return self.server.running

    def status(self) -> dict[str, Any]:
        return {
            "running": self.server.running,
            "pid": self.server.pid if self.server.running else None,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit,
            "failed_attempts": self.failed_attempts,
            "last_failure": self.last_failure,
            "storage_fault": self.storage_fault,
        }

    async def run(self) -> None:
        """Watch and restart until cancelled."""
        while True:
            while self.server.running:
                await asyncio.sleep(_WATCH_EVERY_S)
                fault = self._full()
                if fault is not None:
                    await self._until_space(fault)
            self.last_exit = self.server.returncode
            log.error(
                "nats-server (pid %s) exited with code %s; restarting it on %s",
                self.server.pid,
                self.last_exit,
                self.server.store_dir,
            )
            await self._restart(self.first_pause_s)

    def _full(self) -> str | None:
        """Why the server cannot store events now, None when it can."""
        error = self.server.write_error()
        if error is not None and out_of_space(error):
            return f"nats-server could not write its store ({error})"
        free = self._free()
        if free is not None and free < LOW_SPACE_B:
            return f"the log's file system ({self.server.store_dir}) has {free >> 10} KiB free"
        return None

    def _free(self) -> int | None:
        try:
            return self.server.free_bytes()
        except OSError as exc:
            # The store's directory is gone or unreadable: no measure of its space, and no
            # reason to stop watching (the server's own failure shows in `running`).
            log.debug("cannot measure the log's free space: %r", exc)
            return None

    async def _until_space(self, fault: str) -> None:
        """Wait for room, then restart the server: after a write failed it refuses every later
        write to that stream, answering none (its clients time out), until it restarts."""
        self.storage_fault = fault
        log.error(
            "storage full: %s; writes fail until %d MiB are free, then nats-server restarts",
            fault,
            SPACE_BACK_B >> 20,
        )
        while self.server.running and (self._free() or 0) < SPACE_BACK_B:
            await asyncio.sleep(_WATCH_EVERY_S)
            # The server's own words, once it logged them, say more than the free space.
            self.storage_fault = self._full() or self.storage_fault
        free_mb = (self._free() or 0) >> 20
        log.warning("%d MiB free on the log's file system: restarting nats-server", free_mb)
        await asyncio.to_thread(self.server.stop)
        await self._restart(0.0)
        self.storage_fault = None

    async def _restart(self, pause: float) -> None:
        while True:
            await asyncio.sleep(pause)
            try:
                await self.server.astart()
            except NatsServerError as exc:
                self.failed_attempts += 1
                self.last_failure = one_line(exc)
                pause = min(max(pause * 2, self.first_pause_s), self.max_pause_s)
                log.error(
                    "nats-server restart failed (%s); next attempt in %gs", self.last_failure, pause
                )
                continue
            self.restarts += 1
            self.last_failure = None
            log.warning(
                "nats-server restarted (pid %s) on %s, %s",
                self.server.pid,
                self.server.store_dir,
                self.server.url,
            )
            return


class LogHealth:
    """Whether the service reaches the log, as its NATS connection sees it."""

    def __init__(
        self,
        unhealthy_after_s: float,
        supervisor: Supervisor | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.unhealthy_after_s = unhealthy_after_s
        self.supervisor = supervisor
        self.clock = clock
        self.nc: NATS | None = None  # set once connected
        self.down_since: float | None = None
        self.on_error = quiet_errors("NATS connection", clock)

    async def on_disconnected(self) -> None:
        if self.nc is not None and self.nc.is_closed:
            return  # closed on purpose, not lost
        if self.down_since is None:
            self.down_since = self.clock()
            log.warning("NATS connection lost; reconnecting")

    async def on_reconnected(self) -> None:
        if self.down_since is not None:
            log.warning("NATS connection back after %.1fs", self.clock() - self.down_since)
        self.down_since = None

    def storage_fault(self) -> str | None:
        """Why the log cannot store events now (its file system is full), None when it can or
        when nobody watches its server (an external NATS)."""
        return self.supervisor.storage_fault if self.supervisor is not None else None

    def callbacks(self) -> dict[str, Callable[..., Awaitable[None]]]:
        """The keyword arguments of `nats.connect` that keep this up to date."""
        return {
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
        }

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): unhealthy once the log has been out of reach too long."""
        connected = self.nc.is_connected if self.nc is not None else self.down_since is None
        down_for: float | None = None
        if not connected:
            if self.down_since is None:
                self.down_since = self.clock()
            down_for = self.clock() - self.down_since
        healthy = down_for is None or down_for < self.unhealthy_after_s
        body: dict[str, Any] = {
            "status": "ok" if healthy else "unavailable",
            "nats": {
                "connected": connected,
                "down_for_s": None if down_for is None else round(down_for, 1),
                "unhealthy_after_s": self.unhealthy_after_s,
            },
        }
        if self.supervisor is not None:
            body["nats"]["server"] = self.supervisor.status()
        return healthy, body
