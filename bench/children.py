"""The service as other processes run it: `incidents serve` and `incidents replay --direct`
children on the bench's nats-server, and wrk driving HTTP load."""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx
import psutil

from services.natsserver import free_port

INCIDENTS: Final = str(Path(sys.executable).parent / "incidents")
WRK: Final = shutil.which("wrk")


class ChildError(RuntimeError):
    pass


def child_env(nats_url: str, data_dir: Path, **more: str) -> dict[str, str]:
    """This environment without any INCIDENTS_* setting of the caller's, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    return {**env, "INCIDENTS_NATS_URL": nats_url, "INCIDENTS_DATA_DIR": str(data_dir), **more}


class ServeChild:
    """`incidents serve` on an existing nats-server; its log goes to `<data_dir>.log`."""

    def __init__(self, nats_url: str, data_dir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log_path = data_dir.with_suffix(".log")
        self._log = self._log_path.open("wb")
        env = child_env(nats_url, data_dir, INCIDENTS_HTTP=f"127.0.0.1:{port}")
        self.proc = subprocess.Popen(
            [INCIDENTS, "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def __aenter__(self) -> Self:
        try:
            await self._until(lambda body: True)
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def projected(self, seq: int, timeout: float = 3600) -> float:
        """Until the projector's checkpoint (GET /readyz) reaches `seq`; seconds waited."""
        start = time.perf_counter()
        await self._until(lambda body: body["projector"]["checkpoint"] >= seq, timeout)
        return time.perf_counter() - start

    def rss_mb(self) -> tuple[float, float]:
        """Resident set size now and at its peak (VmHWM), in MB (10^6 bytes)."""
        process = psutil.Process(self.proc.pid)
        now = process.memory_info().rss
        peak = now
        status = Path(f"/proc/{self.proc.pid}/status")
        if status.exists():
            found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            if found:
                peak = int(found.group(1)) * 1024
        return now / 1e6, peak / 1e6

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    async def _until(self, ready: Callable[[Any], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ChildError(
                        f"incidents serve exited with {self.proc.returncode}: "
                        f"{self._log_path.read_text()[-2000:]}"
                    )
                try:
                    answer = await http.get("/readyz")
                    if answer.status_code == 200 and ready(answer.json()):
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise ChildError(f"incidents serve: not there after {timeout:.0f} s")


def replay_direct(nats_url: str, data_dir: Path) -> tuple[float, float]:
    """`incidents replay --direct` in a child: wall seconds and the child's peak RSS in MB."""
    log = data_dir.with_suffix(".log")
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [INCIDENTS, "replay", "--direct"],
            env=child_env(nats_url, data_dir),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
        # wait4: this child's own rusage (RUSAGE_CHILDREN would mix in every serve child).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise ChildError(f"incidents replay --direct: {log.read_text()[-2000:]}")
    return wall, usage.ru_maxrss * 1024 / 1e6


class WrkResult:
    def __init__(self, text: str) -> None:
        rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
        if rate is None:
            raise ChildError(f"unexpected wrk output:\n{text}")
        self.requests_per_s = float(rate.group(1))
        failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        self.non_2xx = int(failed.group(1)) if failed else 0
        errors = re.search(r"Socket errors: (.*)", text)
        self.socket_errors = errors.group(1) if errors else ""


def wrk(
    script: Path, url: str, threads: int, connections: int, seconds: int, *args: str
) -> WrkResult:
    assert WRK is not None
    done = subprocess.run(
        [
            WRK,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return WrkResult(done.stdout)
