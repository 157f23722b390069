"""A small TCP proxy the fault tests put between the service and PostgreSQL.

`cut()` drops every open connection and refuses new ones (the listening socket closes, so
connects fail at once, as they do when a database host goes away); `restore()` listens again
on the same port. `black_hole()` is the silent kind of failure: connections stay open and new
ones are accepted, but nothing is forwarded either way (a peer waits for answers that never
come, as behind a dead NAT entry or a partitioned network); `restore()` ends it, dropping the
connections whose bytes were swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._silent = False
        self._swallowed: set[asyncio.StreamWriter] = set()  # connections that lost bytes

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._silent:  # accepted, never answered
            self._writers.add(client_w)
            self._swallowed.add(client_w)
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while await client_r.read(65536):
                    pass
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, upstream_w))
        pumps = [
            asyncio.create_task(self._pump(client_r, upstream_w, client_w)),
            asyncio.create_task(self._pump(upstream_r, client_w, client_w)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_w, upstream_w):
            writer.close()
            self._writers.discard(writer)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self._silent:
                    self._swallowed.add(client)
                    continue
                writer.write(data)
                await writer.drain()

    def black_hole(self) -> None:
        self._silent = True

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def restore(self) -> None:
        if self._silent:
            self._silent = False
            for writer in self._swallowed:
                writer.transport.abort()
            self._swallowed.clear()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
