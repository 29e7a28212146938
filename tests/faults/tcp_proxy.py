"""A TCP proxy on loopback that delays, blackholes or cuts what passes through it.

It runs its own event loop in a thread of its own, so it can sit between a child process
(`incidents serve`) and a nats-server while the test's thread drives both. Controls are called
from the test's thread and take effect before they return:

- `delay(s)`: every chunk waits `s` seconds before it is forwarded (a slow network);
- `drop()`: a partition: connections stay open and new ones are accepted, but no byte moves in
  either direction (nothing is read, so TCP's windows fill up as they would on a dead link;
  nothing is lost: what was sent moves on after `heal`);
- `cut(refuse=...)`: every open connection is closed at once (both sides, without flushing);
  with `refuse`, new connections are closed as soon as they are accepted;
- `heal()`: back to forwarding everything at once.
"""

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Final, Self, TypeVar

T = TypeVar("T")
CHUNK: Final = 65_536
_CONTROL_TIMEOUT_S: Final = 10.0


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0  # known once started
        self.accepted = 0  # connections accepted, over the proxy's life
        self.refused = 0  # connections closed on arrival while refusing
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delay_s = 0.0
        self._refusing = False
        self._flowing: asyncio.Event | None = None  # the loop's own: made on it

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def open_links(self) -> int:
        return len(self._links)

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CONTROL_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def delay(self, seconds: float) -> None:
        self._delay_s = seconds

    def drop(self) -> None:
        self._call(self._set_flowing(False))

    def cut(self, refuse: bool = False) -> int:
        """Close every open connection; returns how many there were."""
        self._refusing = refuse
        return self._call(self._cut())

    def heal(self) -> None:
        self._delay_s = 0.0
        self._refusing = False
        self._call(self._set_flowing(True))

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        done: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return done.result(_CONTROL_TIMEOUT_S)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> int:
        links = list(self._links)
        self._links.clear()
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._flowing is not None
        self._tasks.add(task)
        try:
            if self._refusing:
                self.refused += 1
                writer.transport.abort()
                return
            self.accepted += 1
            await self._flowing.wait()  # a partition: the far side is not reached either
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            link = (writer, up_writer)
            self._links.add(link)
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._links.discard(link)
                writer.transport.abort()
                up_writer.transport.abort()
        except asyncio.CancelledError:
            # Stopping the proxy: ends here, as its clients' connections do. (Python 3.11's
            # streams log a handler that ends cancelled as an unhandled error.)
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward until either side closes (a closed or reset socket ends the link)."""
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()  # not even read while dropped: TCP pushes back
                data = await source.read(CHUNK)
                if not data:
                    return
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                await self._flowing.wait()  # read just before a drop: held until the heal
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            return
