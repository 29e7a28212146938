"""Where a running `incidents serve` can be reached: `<data dir>/serve.json`, for the CLI.

`serve` writes it once everything listens and removes it when it stops cleanly; the verbs
that need NATS (`verify`, `export`) or HTTP read it when no URL is given, so they work right
after `serve`, whose embedded nats-server has a new free port on every start. It names
endpoints only, never a secret: with tokens on, the service's NATS password stays in
`nats-credentials.toml` (services/natsauth.py, mode 0600), which a verb reads itself, so only
the user who may read that file gets in. The file is private (0600) all the same. One left
behind by a `serve` that was killed is ignored: its pid is no longer alive.
"""

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import msgspec

from services.config import Config
from services.natsurl import target

RUNTIME_FILE: Final = "serve.json"


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """What `serve` tells the CLI. `nats_users`: the embedded nats-server asks for the
    service user's credentials (the data dir's `nats-credentials.toml`)."""

    http_url: str
    nats_url: str
    nats_users: bool
    stream: str
    pid: int
    started_at: datetime


_decode: Final = msgspec.json.Decoder(Endpoints).decode


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The data dir the CLI looks in: `INCIDENTS_DATA_DIR`, read as `serve` reads it."""
    return Config.from_env({k: v for k, v in env.items() if k == "INCIDENTS_DATA_DIR"}).data_dir


def reachable(url: str) -> str:
    """`url` as a client on this host dials it: a wildcard bind (0.0.0.0, ::) is not an
    address to send to (nor a Host the service answers for), its loopback is."""
    parts = urlsplit(url)
    loopback = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(parts.hostname or "")
    if loopback is None:
        return url
    return parts._replace(netloc=f"{loopback}:{parts.port}").geturl()


def without_credentials(urls: str) -> str:
    """NATS URL(s) with their credentials taken out: the file holds no secret."""
    return ",".join(target(urls).servers)


@contextlib.contextmanager
def published(directory: Path, endpoints: Endpoints) -> Iterator[Path]:
    """Write the file for the block (atomically: readers never see half of it); remove it
    afterwards, unless another process has replaced it meanwhile."""
    path = directory / RUNTIME_FILE
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.encode(endpoints) + b"\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            current = _read(path)
            if current is not None and current.pid == endpoints.pid:
                path.unlink()


def _read(path: Path) -> Endpoints | None:
    """The file's endpoints; None when there is none or it is not one. Other OSErrors (not
    readable by this user) propagate: "no service" would be the wrong answer."""
    try:
        return _decode(path.read_bytes())
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, only not ours to signal
    return True


def running_service(directory: Path) -> Endpoints | None:
    """The endpoints of the `serve` running on `directory`, or None: no file, a file that is
    not one, or one whose process is gone (a `serve` killed before it could remove it)."""
    endpoints = _read(directory / RUNTIME_FILE)
    if endpoints is None or not _alive(endpoints.pid):
        return None
    return endpoints
