"""A real HTTP receiver for the notifier's tests: records every request it gets, answers what
the test tells it to, and can be stopped and started again on the same port (a receiver that
is down refuses connections)."""

import asyncio
import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from services.api.server import serving


class Received(msgspec.Struct, frozen=True):
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.answer = 200  # the status the next requests get

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def taken(self) -> list[Received]:
        """Requests answered 2xx: deliveries the receiver took."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def _app(self) -> Litestar:
        @post("/{path:path}")
        async def hook(request: Request[Any, Any, Any], path: FromPath[Path]) -> Response[str]:
            body = await request.body()
            status = self.answer
            self.requests.append(Received(str(path), dict(request.headers), body, status))
            return Response("ok" if status < 300 else "down", status_code=status)

        return Litestar([hook], logging_config=None)

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[str]:
        async with serving(self._app(), "127.0.0.1", self.port) as url:
            yield url


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> None:
    """Until `check()` holds (a coroutine's result is awaited); fails the test after `timeout`
    seconds."""
    async with asyncio.timeout(timeout):
        while True:
            done = check()
            if await done if inspect.isawaitable(done) else done:
                return
            await asyncio.sleep(0.05)
