"""A loopback TCP proxy for fault tests: pass, drop, stall and slow, switched at run time.

It runs its own asyncio loop in a thread of the test process, so a test drives it from plain
code or from its own event loop alike. Every connection accepted on 127.0.0.1:PORT is
forwarded to the target; the control methods change what happens to the bytes in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["FaultProxy", "ProxyStats"]

T = TypeVar("T")

#: Bytes read per chunk: small enough that `slow` paces smoothly.
CHUNK = 16 * 1024


@dataclass
class ProxyStats:
    """What the proxy has seen since it started."""

    accepted: int = 0
    refused: int = 0
    dropped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class _Link:
    """One client connection and its upstream, with the two tasks pumping between them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        """Cut both sides at once with a reset, as a crashed peer or a firewall would."""
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger 0: close sends RST instead of FIN, so the peer sees the cut at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:`port` (a free one by default) to `target`; a context manager.

    Modes: `pass_through()`, `drop(refuse_s)`, `stall(seconds)`, `slow(delay_s, bytes_per_s)`.
    """

    def __init__(self, target: tuple[str, int], port: int = 0, host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = port
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._refuse_until = 0.0
        self._stall_until = 0.0
        self._delay_s = 0.0
        self._bytes_per_s: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """`HOST:PORT` clients connect to."""
        return f"{self.host}:{self.port}"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind and start forwarding (in pass mode)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listener and every connection, stop the thread, close the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close(), timeout_s=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for link in self._links for t in link.tasks]
        self._abort_all()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Handlers still opening their upstream: let them see the closed server and go.
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("proxy not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # -- modes -----------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything at once again (ends stall, slow and refusal)."""
        self._refuse_until = self._stall_until = 0.0
        self._delay_s, self._bytes_per_s = 0.0, None

    def drop(self, refuse_s: float = 0.0) -> int:
        """Reset every open connection now, and refuse new ones for `refuse_s` seconds; the
        number of connections cut."""
        self._refuse_until = time.monotonic() + refuse_s

        async def cut() -> int:
            return self._abort_all()

        return self._call(cut())

    def stall(self, seconds: float) -> None:
        """Forward nothing for `seconds` (from now), holding every connection open."""
        self._stall_until = time.monotonic() + seconds

    def slow(self, delay_s: float = 0.0, bytes_per_s: float | None = None) -> None:
        """Delay each chunk by `delay_s`, and hold each direction of a connection to
        `bytes_per_s`."""
        self._delay_s, self._bytes_per_s = delay_s, bytes_per_s

    def retarget(self, target: tuple[str, int]) -> None:
        """Forward new connections to `target` (open ones keep theirs)."""
        self.target = target

    @property
    def open_connections(self) -> int:
        """Client connections open now."""
        return len(self._links)

    # -- forwarding ------------------------------------------------------------------------

    def _abort_all(self) -> int:
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
        self.stats.dropped += len(links)
        return len(links)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            self.stats.refused += 1
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(link)
            _reset(writer)
            return
        link.upstream = up_writer
        if link not in self._links:  # dropped while connecting
            link.abort()
            return
        self.stats.accepted += 1
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, "bytes_up")),
            asyncio.create_task(self._pump(up_reader, writer, link, "bytes_down")),
        ]

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        link: _Link,
        counter: str,
    ) -> None:
        try:
            while True:
                chunk = await src.read(CHUNK)
                if not chunk:
                    break
                await self._hold(len(chunk))
                dst.write(chunk)
                await dst.drain()
                setattr(self.stats, counter, getattr(self.stats, counter) + len(chunk))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed: close the other, as a plain TCP relay does.
            if link in self._links:
                self._links.discard(link)
                for task in link.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                for writer in (link.client, link.upstream):
                    if writer is not None:
                        writer.close()

    async def _hold(self, size: int) -> None:
        """Wait as the current mode says before forwarding `size` bytes."""
        while (wait := self._stall_until - time.monotonic()) > 0:
            await asyncio.sleep(min(wait, 0.05))
        pause = self._delay_s
        if self._bytes_per_s:
            pause += size / self._bytes_per_s
        if pause > 0:
            await asyncio.sleep(pause)
