"""One process per data dir: an exclusive lock on `<data dir>/incidents.lock` for its lifetime.

A second `incidents serve` (or `incidents project`) on the same data dir would start another
nats-server on the live store and fight over the read models; it stops before touching
anything instead, naming the holder. The kernel releases the lock when the holder exits, even
on SIGKILL, so a stale file never blocks a restart.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

LOCK_FILE: Final = "incidents.lock"


class DataDirBusyError(Exception):
    """Another process holds the data dir."""


@contextlib.contextmanager
def holding(data_dir: Path, what: str) -> Iterator[None]:
    """Hold the data dir's lock for the block; `what` names this process to a second one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # Not inherited by children (O_CLOEXEC): the lock dies with this process, not with a
    # nats-server it started.
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip()
            raise DataDirBusyError(
                f"data dir {data_dir} is in use by {holder or 'another process'}; "
                "stop it first or set another INCIDENTS_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"incidents {what} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)
