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

from conformance.wire import rpc

from .config import HostConfig
from .quirks import Quirk
from .rpc_session import Reply, RpcSession
from .service import Clock, KmsService, Outcome


@dataclass
class HostStats:
    connections: int = 0
    active: int = 0
    refused: int = 0
    requests: int = 0
    malformed: int = 0
    paused: int = 0  # times a connection's reading was paused because its answers backed up


def _malformed(reply: Reply) -> bool:
    """A PDU or payload the host could not read (a version it refuses is not malformed: that is an answer)."""
    return reply.malformed or (reply.outcome is not None and reply.outcome.malformed)


class ReferenceHost:
    def __init__(self, config: HostConfig, service: KmsService | None = None):
        self.config = config
        self.service = service or KmsService(config, clock=Clock())
        self.clock = self.service.clock  # the control channel advances it
        self.stats = HostStats()
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._connections: set[KmsConnection] = set()
        self.address: tuple[str, int] | None = None
        self.control_address: tuple[str, int] | None = None
        # called with (peer, client PDU, Reply) for every PDU: the client-conformance harness records with it
        self.on_pdu: Callable[[str, bytes, Reply], None] | None = None
        self.publish_results: list[tuple[str, bool, str]] = []  # (domain, ok, detail) of the last publication
        self.shared_request = b""  # the shared-request-buffer quirk's one slot

    async def start(self) -> tuple[str, int]:
        if self.config.low_priority:
            os.nice(10)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: KmsConnection(self), self.config.host, self.config.port,
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
        for connection in list(self._connections):
            connection.close()
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

    def _crash(self) -> None:
        """The crash-on-malformed quirk: stop listening and drop every connection, as a dead host would."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()

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
        return {"ok": True, "clock_offset": self.clock.offset, "status": self.service.status(),
                "requests": self.stats.requests}


class KmsConnection(asyncio.Protocol):
    """One client connection: bytes in, whole PDUs to the session, replies out.

    A protocol rather than streams: no task or timeout object per read, which was
    most of the host's cost per exchange. One lazily re-armed timer enforces both
    limits: idle between PDUs, and read_timeout for each half of a PDU (header,
    then body), so a slow sender cannot hold a slot (slowloris). A client that reads
    none of its answers is paused, then closed after read_timeout.
    """

    def __init__(self, host: ReferenceHost):
        self.host = host
        self.config = host.config
        self.transport: asyncio.Transport | None = None
        self.peer = "?:0"
        self.buffer = bytearray()
        self.session: RpcSession | None = None
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.body_started = False  # the buffered PDU's header is complete
        self.paused = False  # reading paused: the client does not read its answers

    def connection_made(self, transport: asyncio.Transport) -> None:
        host = self.host
        self.transport = transport
        peername = transport.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peername[0]}:{peername[1]}"
        host.stats.connections += 1
        if host.stats.active >= self.config.max_connections:
            host.stats.refused += 1
            transport.close()
            return
        host.stats.active += 1
        host._connections.add(self)
        self.session = RpcSession(host.service, self.config)
        self._arm(self.config.idle_timeout)

    def _arm(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + seconds
        if self.timer is not None and self.timer.when() > self.deadline:
            self.timer.cancel()  # an earlier deadline than the one the timer sleeps to
            self.timer = None
        if self.timer is None:
            self.timer = loop.call_at(self.deadline, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:  # re-armed since: sleep on to the new deadline
            self.timer = loop.call_at(self.deadline, self._expired)
            return
        if self.paused:  # its answers backed up and it still reads none within the limit: give the slot back
            self._refuse("client reads none of its answers", abort=True)  # close() would wait for it to read
        elif self.buffer:
            self._refuse(self._cut_short())
        else:
            self.close()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return
        was_empty = not self.buffer
        self.buffer += data
        buffer = self.buffer
        while len(buffer) >= rpc.HEADER_SIZE:
            frag = rpc.peek_frag_length(buffer)
            if frag < rpc.HEADER_SIZE or frag > self.config.max_pdu:
                self._refuse(f"frag_length {frag} outside {rpc.HEADER_SIZE}..{self.config.max_pdu}")
                if Quirk.CRASH_ON_MALFORMED in self.config.quirks:
                    self.host._crash()
                return
            if len(buffer) < frag:
                if not self.body_started:
                    self.body_started = True
                    self._arm(self.config.read_timeout)
                return
            pdu = bytes(buffer[:frag])
            del buffer[:frag]
            self.body_started = False
            if not self._handle(pdu):
                return
            was_empty = True
        if self.paused:
            return  # the paused client's deadline stands
        if not buffer:
            self._arm(self.config.idle_timeout)
        elif was_empty:  # a new PDU began: its header has read_timeout to arrive
            self._arm(self.config.read_timeout)

    def _handle(self, pdu: bytes) -> bool:
        """Answer one PDU; False when the connection is closed after it."""
        host = self.host
        if Quirk.SHARED_REQUEST_BUFFER in self.config.quirks and pdu[2] == rpc.PType.REQUEST:
            # a race on purpose: requests wait in one host-wide slot, and each answer is for whatever is there
            host.shared_request = pdu
            asyncio.get_running_loop().call_later(0.02, lambda: self.transport.is_closing()
                                                  or self._answer(host.shared_request))
            return True
        return self._answer(pdu)

    def _answer(self, pdu: bytes) -> bool:
        host = self.host
        reply = self.session.handle(pdu)
        if host.on_pdu is not None:
            host.on_pdu(self.peer, pdu, reply)
        if Quirk.CRASH_ON_MALFORMED in self.config.quirks and _malformed(reply):
            host._crash()
            return False
        host.stats.requests += reply.outcome is not None
        host._log(self.peer, reply.outcome, reply.problem)
        if reply.data:
            self.transport.write(reply.data)
        if reply.close:
            self.close()
            return False
        return True

    def _cut_short(self) -> str:
        return "PDU cut short or sent too slowly" if self.body_started else "RPC header cut short or sent too slowly"

    def _refuse(self, problem: str, abort: bool = False) -> None:
        self.host._log(self.peer, None, problem)
        self.close(abort)

    def close(self, abort: bool = False) -> None:
        self.buffer.clear()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def eof_received(self) -> bool:
        if self.buffer:
            if Quirk.PROCESS_CUT_PDU in self.config.quirks and len(self.buffer) >= rpc.HEADER_SIZE:
                # as py-kms does: what arrived is taken for the whole PDU, whatever frag_length promised
                cut = bytearray(self.buffer)
                cut[8:10] = len(cut).to_bytes(2, "little")
                self.buffer.clear()
                self._handle(bytes(cut))
                return False
            self.host._log(self.peer, None, self._cut_short())
            self.buffer.clear()
        return False  # close our side too

    # a client that sends but never reads must not grow our send buffer without bound
    def pause_writing(self) -> None:
        self.transport.pause_reading()
        self.paused = True
        self.host.stats.paused += 1
        self._arm(self.config.read_timeout)

    def resume_writing(self) -> None:
        self.paused = False
        self.transport.resume_reading()
        self._arm(self.config.read_timeout if self.buffer else self.config.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.session is not None:
            self.session = None
            self.host.stats.active -= 1
            self.host._connections.discard(self)

def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop (libuv) when installed: about a third less loop overhead per exchange than asyncio's own."""
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"event loop {kind!r}: auto, asyncio or uvloop")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ValueError("uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class HostThread:
    """A reference host on its own event loop in a background thread (embedded use, tests)."""

    def __init__(self, config: HostConfig, loop: str = "auto"):
        self.host = ReferenceHost(config)
        self._loop = new_event_loop(loop)
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
