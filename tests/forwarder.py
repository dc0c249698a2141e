"""A plain TCP port-forward (what `docker -p 11688:1688` or a Kubernetes Service does): every connection to its
port is relayed to the upstream host, half-closes included, in a background thread; with `delay`, each answer
arrives that much later (a host far away, or a slow one)."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Forwarder:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", delay: float = 0.0):
        self.upstream, self.host, self.delay = upstream, host, delay
        self.address: tuple[str, int] | None = None
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="forwarder", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float = 0.0) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # the client's half-close reaches the host

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, up_writer), self._pipe(up_reader, client_writer, self.delay))
        for writer in (up_writer, client_writer):
            writer.close()

    async def _start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        return self._server.sockets[0].getsockname()[:2]

    def __enter__(self) -> "Forwarder":
        self._thread.start()
        self.address = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop():
            self._server.close()
            relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in relays:  # connections still open: closed with the forward
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
