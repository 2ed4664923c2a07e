"""A TCP proxy that a test puts between a worker (a simulated host) and PostgreSQL.

It runs an asyncio loop in a thread of the test process and is switched between:

* ``pass``: bytes flow both ways;
* ``stall``: every byte is held, both ways, on every connection, new ones included
  (a network that went silent: no error, no reset); switching back releases them;
* ``drop``: every open connection is closed, and new ones are closed at once;
* ``refuse``: the port stops listening (``connection refused``); open connections
  keep flowing.

Usage::

    with FaultProxy(upstream_port) as proxy:
        url = f"postgresql://user@127.0.0.1:{proxy.port}/db"
        proxy.set_mode("stall")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "stall", "drop", "refuse"]
_CHUNK = 65536


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        #: Connections accepted so far (a test can check that a worker reconnected).
        self.accepted = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._setup())
        return self

    def set_mode(self, mode: Mode) -> None:
        self._call(self._switch(mode))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: object) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(timeout=10)

    async def _setup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _switch(self, mode: Mode) -> None:
        assert self._flowing is not None
        old, self.mode = self.mode, mode
        if mode == "stall":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "drop":
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if old == "refuse" and mode != "refuse":
            await self._listen()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "drop":
            writer.transport.abort()
            return
        assert self._flowing is not None
        # Like a silent network, a stall holds new connections too.
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                # Held here while stalled: nothing more is read, so the kernel's
                # buffers fill and the sender sees a silent peer.
                await self._flowing.wait()
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        # One side ended: end the other (a half-open relay would hide the loss).
        writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
