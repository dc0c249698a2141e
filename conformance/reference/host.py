"""The reference KMS host: an asyncio TCP server around `RpcSession` and `KmsService`.

Limits hold under hostile input: frag_length is checked before the body is read,
idle and slow senders time out, connections beyond the maximum are closed at once.
A test-control channel (advance the clock, reset the client table) is offered on
loopback only, and only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Callable

from conformance.wire import hresult, rpc

from .config import HostConfig
from .rpc_session import Reply, RpcSession
from .service import Clock, KmsService, Outcome


@dataclass
class HostStats:
    connections: int = 0
    active: int = 0
    refused: int = 0
    requests: int = 0
    malformed: int = 0


def _malformed(reply: Reply) -> bool:
    if reply.problem:
        return True
    outcome = reply.outcome
    return outcome is not None and outcome.payload is None and outcome.hresult == hresult.E_INVALID_DATA


class ReferenceHost:
    def __init__(self, config: HostConfig, service: KmsService | None = None):
        self.config = config
        self.service = service or KmsService(config, clock=Clock())
        self.clock = self.service.clock  # the control channel advances it
        self.stats = HostStats()
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] | None = None
        self.control_address: tuple[str, int] | None = None
        # called with (peer, client PDU, Reply) for every PDU: the client-conformance harness records with it
        self.on_pdu: Callable[[str, bytes, Reply], None] | None = None
        self.publish_results: list[tuple[str, bool, str]] = []  # (domain, ok, detail) of the last publication

    async def start(self) -> tuple[str, int]:
        if self.config.low_priority:
            os.nice(10)
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port,
                                                  reuse_address=True, backlog=self.config.backlog)
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        self.config.port = sock[1]  # the real port goes into bind_ack's secondary address
        if self.config.dns_publish:
            self._publish()
        if self.config.control:
            self._control = await asyncio.start_server(self._serve_control, "127.0.0.1", 0)
            self.control_address = self._control.sockets[0].getsockname()[:2]
        return self.address

    def _publisher(self):
        from .discovery import Publisher, PublishTarget

        if self.config.dns_server is None or not self.config.dns_publish_list:
            raise ValueError("DNS publishing needs a DNS server and at least one domain to publish in")
        targets = [PublishTarget.parse(entry) for entry in self.config.dns_publish_list]
        return Publisher(self.config.dns_server, self.config.dns_hostname, self.address[0], self.address[1],
                         targets, log=self.service.log_record)

    def _publish(self) -> None:
        """Publish SRV and A records (events 12294 / 12293); a failure is logged, the host keeps serving."""
        self.publish_results = self._publisher().publish()

    async def stop(self) -> None:
        if self.config.dns_publish and self.config.dns_unpublish_on_exit and self.address:
            self._publisher().unpublish()
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for writer in list(self._writers):
            writer.close()
        for server in (self._server, self._control):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()

    def _log(self, peer: str, outcome: Outcome | None, problem: str) -> None:
        if outcome is not None:
            self.service.log_event(peer, outcome)
        elif problem:
            self.stats.malformed += 1
            self.service.log_record({"client": peer, "result": "malformed", "reason": problem})

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{peername[0]}:{peername[1]}"
        self.stats.connections += 1
        if self.stats.active >= self.config.max_connections:
            self.stats.refused += 1
            writer.close()
            return
        self.stats.active += 1
        self._writers.add(writer)
        session = RpcSession(self.service, self.config)
        try:
            while True:
                try:
                    first = await asyncio.wait_for(reader.readexactly(1), self.config.idle_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                try:
                    # from a PDU's first byte on, the slow-sender limit applies (slowloris)
                    header = first + await asyncio.wait_for(reader.readexactly(rpc.HEADER_SIZE - 1),
                                                            self.config.read_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    self._log(peer, None, "RPC header cut short or sent too slowly")
                    return
                frag = rpc.peek_frag_length(header)
                if frag < rpc.HEADER_SIZE or frag > self.config.max_pdu:
                    self._log(peer, None, f"frag_length {frag} outside {rpc.HEADER_SIZE}..{self.config.max_pdu}")
                    if "crash-on-malformed" in self.config.quirks:
                        self._crash()
                    return
                try:
                    body = await asyncio.wait_for(reader.readexactly(frag - rpc.HEADER_SIZE), self.config.read_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    self._log(peer, None, "PDU cut short or sent too slowly")
                    return
                reply = session.handle(header + body)
                if self.on_pdu is not None:
                    self.on_pdu(peer, header + body, reply)
                if "crash-on-malformed" in self.config.quirks and _malformed(reply):
                    self._crash()
                    return
                self.stats.requests += reply.outcome is not None
                self._log(peer, reply.outcome, reply.problem)
                if reply.data:
                    writer.write(reply.data)
                    await writer.drain()
                if reply.close:
                    return
        except ConnectionError:
            return
        finally:
            self.stats.active -= 1
            self._writers.discard(writer)
            writer.close()

    def _crash(self) -> None:
        """The crash-on-malformed quirk: stop listening and drop every connection, as a dead host would."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """JSON lines: {"op": "advance", "seconds": N} | {"op": "reset"} | {"op": "status"}."""
        try:
            while line := await reader.readline():
                try:
                    command = json.loads(line)
                    answer = self.control(command)
                except (ValueError, KeyError, TypeError) as exc:
                    answer = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    def control(self, command: dict) -> dict:
        op = command["op"]
        if op == "advance":
            self.clock.offset += float(command["seconds"])
        elif op == "reset":
            self.service.reset()
            self.clock.offset = 0.0
        elif op != "status":
            raise ValueError(f"unknown control op {op!r} (advance, reset, status)")
        return {"ok": True, "clock_offset": self.clock.offset, "status": self.service.status()}


class HostThread:
    """A reference host on its own event loop in a background thread (embedded use, tests)."""

    def __init__(self, config: HostConfig):
        self.host = ReferenceHost(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kms-reference-host", daemon=True)

    def start(self) -> tuple[str, int]:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.host.start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.host.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()  # its selector and self-pipe are file descriptors too
        self.host.service.store.close()

    def call(self, fn, *args):
        """Run fn(*args) on the host's loop thread (the host's state is not thread-safe)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def __enter__(self) -> "HostThread":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
