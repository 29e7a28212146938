"""Serving the HTTP app with uvicorn inside the service's own event loop."""

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn
from litestar import Litestar

from services.config import ConfigError


def check_tls(cert: Path, key: Path) -> None:
    """Refuse at start, naming the variables, a certificate or key uvicorn could not load."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"INCIDENTS_TLS_CERT={cert}, INCIDENTS_TLS_KEY={key}: cannot load them: {exc}"
        ) from None


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: signals belong to `serve`, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    # Bound here, not by uvicorn, so a taken port is an OSError we report (uvicorn would exit).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it small answers wait ~40 ms for delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: Litestar, host: str, port: int, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[str]:
    """Serve `app` on host:port (0: a free port) until the block ends; yields the base URL.

    `tls`: (certificate chain, private key) PEM files: HTTPS instead of HTTP.
    """
    with _listen(host, port) as sock:
        http = _EmbeddedUvicorn(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="on",
                # Named, not "auto" (which falls back to h11 unnoticed): httptools parses in C;
                # measured, GET /healthz took 0.13 ms of CPU instead of h11's 0.20.
                http="httptools",
                timeout_graceful_shutdown=5,
                ssl_certfile=tls[0] if tls else None,
                ssl_keyfile=tls[1] if tls else None,
            )
        )
        task = asyncio.create_task(http.serve(sockets=[sock]))
        try:
            while not http.started:
                if task.done():
                    task.result()
                    raise RuntimeError("HTTP server stopped during start-up")
                await asyncio.sleep(0.01)
            bound_host, bound_port = sock.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            yield f"{'https' if tls else 'http'}://{shown}:{bound_port}"
        finally:
            http.should_exit = True
            await task
