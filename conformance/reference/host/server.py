"""The reference KMS host: an asyncio TCP server around `RpcSession` and `KmsService`.

Limits hold under hostile input: frag_length is checked before the body is read,
idle and slow senders time out (sooner before a bind), and a connection beyond the
maximum makes room by closing the least recently active one, so clients that hold
connections open and idle cannot lock real clients out.

The KMS requests of one event-loop turn are counted in one transaction (group commit),
and their answers are sent only after it, so `kill -9` loses no answered activation.
A test-control channel (advance the clock, reset the client table) is offered on
loopback only, and only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from conformance.net.loop import new_event_loop
from conformance.wire import rpc

from .config import HostConfig
from .rpc_session import Reply, RpcSession
from .service import Clock, KmsService, Decision


@dataclass
class HostStats:
    connections: int = 0
    active: int = 0
    refused: int = 0  # closed on arrival: no connection to make room with (max_connections 0)
    evicted: int = 0  # least recently active connections closed to make room for a new one
    requests: int = 0
    malformed: int = 0
    paused: int = 0  # times a connection's reading was paused because its answers backed up


def dns_publisher(config: HostConfig, address: tuple[str, int], log: Callable[[dict], None]):
    from .publish import Publisher, PublishTarget

    if config.dns_server is None or not config.dns_publish_list:
        raise ValueError("DNS publishing needs a DNS server and at least one domain to publish in")
    targets = [PublishTarget.parse(entry) for entry in config.dns_publish_list]
    return Publisher(config.dns_server, config.dns_hostname, address[0], address[1], targets, log=log)


class ReferenceHost:
    def __init__(self, config: HostConfig, service: KmsService | None = None,
                 session: Callable[[KmsService, HostConfig], RpcSession] = RpcSession,
                 connection: "Callable[[ReferenceHost], KmsConnection] | None" = None):
        self.config = config
        self.service = service or KmsService(config, clock=Clock())
        self.new_session = session  # one per connection
        self.new_connection = connection or KmsConnection
        self.clock = self.service.clock  # the control channel advances it
        self.stats = HostStats()
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        # open connections, least recently active first: the one to close when a new one needs room
        self._connections: OrderedDict[KmsConnection, None] = OrderedDict()
        self._turn: list[tuple[KmsConnection, Reply]] = []  # this loop turn's requests, waiting for their count
        self._turn_connections: dict[KmsConnection, None] = {}  # connections with replies queued, in order
        self._flush_handle: asyncio.Handle | None = None
        self.address: tuple[str, int] | None = None
        self.control_address: tuple[str, int] | None = None
        # called with (peer, client PDU, Reply) for every PDU: the client-conformance harness records with it
        self.on_pdu: Callable[[str, bytes, Reply], None] | None = None
        self.publish_results: list[tuple[str, bool, str]] = []  # (domain, ok, detail) of the last publication
        self.failing: dict | None = None  # while commits fail: since when, the error, requests closed unanswered

    async def start(self, sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on config.host:port, or on `sock` (a host worker's share of one port)."""
        if self.config.low_priority:
            os.nice(10)
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: self.new_connection(self), sock=sock,
                                                    backlog=self.config.backlog)
        else:
            self._server = await loop.create_server(lambda: self.new_connection(self), self.config.host, self.config.port,
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
        return dns_publisher(self.config, self.address, self.service.log_record)

    def _publish(self) -> None:
        """Publish SRV and A records (events 12294 / 12293); a failure is logged, the host keeps serving."""
        self.publish_results = self._publisher().publish()

    async def stop(self) -> None:
        if self.config.dns_publish and self.config.dns_unpublish_on_exit and self.address:
            self._publisher().unpublish()
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        if self._flush_handle is not None:  # answer what was received (and count it) before going
            self._flush_handle.cancel()
            self._flush()
        for connection in list(self._connections):
            connection.close()
        for server in (self._server, self._control):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()

    def _log(self, peer: str, decision: Decision | None, problem: str) -> None:
        if decision is not None:
            self.service.log_event(peer, decision)
        elif problem:
            self.stats.malformed += 1
            self.service.log_record({"client": peer, "result": "malformed", "reason": problem})

    # --- connections: room for a new one, and the group commit of a turn's requests ---
    def admit_connection(self, connection: "KmsConnection") -> bool:
        """Register a new connection; at the maximum, close the least recently active one to make room."""
        if len(self._connections) >= self.config.max_connections:
            if not self._connections:
                self.stats.refused += 1
                return False
            idlest = next(iter(self._connections))
            self.stats.evicted += 1
            idlest.release()
            idlest.close(abort=True)  # an idle or stalled peer: nothing of ours is waiting to be sent
        self._connections[connection] = None
        self.stats.active += 1
        return True

    def release(self, connection: "KmsConnection") -> None:
        if self._connections.pop(connection, False) is None:
            self.stats.active -= 1

    def queue(self, connection: "KmsConnection", reply: Reply) -> None:
        """Hold a reply for the end of this loop turn (a KMS request to count, or a reply queued behind one)."""
        if reply.pending is not None:
            self._turn.append((connection, reply))
        self._turn_connections[connection] = None
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Count the turn's requests in one transaction, then seal and send every queued reply, in order."""
        self._flush_handle = None
        turn, self._turn = self._turn, []
        connections, self._turn_connections = self._turn_connections, {}
        try:
            counts = self.service.count_all([reply.pending.admitted for _, reply in turn]) if turn else []
        except sqlite3.Error as exc:  # nothing was committed, so nothing may be answered
            self._not_recorded(exc, len(turn))
            for connection in connections:
                connection.queued.clear()
                connection.close(abort=True)
            return
        if turn and self.failing is not None:
            self._recorded_again()
        for (connection, reply), count in zip(turn, counts):
            if connection.session is not None:
                connection.session.finish(reply, count)
        for connection in connections:
            connection.send_queued()

    def _not_recorded(self, error: sqlite3.Error, requests: int) -> None:
        """A turn's commit failed: one line when the failures begin (not one per request), then a count."""
        self.service.log_record({"result": "error", "reason": f"client table: {error}"})
        if self.failing is None:
            self.failing = {"since": self.service.clock(), "error": str(error), "requests": 0}
            self.say(f"cannot record requests in {self.config.db} ({error}): their connections are closed "
                     f"unanswered until it can")
        self.failing["requests"] += requests

    def _recorded_again(self) -> None:
        """The first commit after failures: one line, and the episode kept in the database (host-status)."""
        episode, self.failing = self.failing, None
        episode["until"] = self.service.clock()
        self.say(f"recording again in {self.config.db} after {episode['until'] - episode['since']:.1f} s; "
                 f"{episode['requests']} request(s) were closed unanswered meanwhile")
        self.service.log_record({"result": "recovered", "reason": f"client table: {episode['error']}",
                                 "unanswered": episode["requests"]})
        store = self.service.store
        try:
            store.put("recording_failures", (store.get("recording_failures") or [])[-9:] + [episode])
        except sqlite3.Error:
            pass  # failing again: the next turn says so

    def say(self, line: str) -> None:
        """One line of the host's own log (stderr), stamped, with the worker's number when there are several."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.service.clock()))
        worker = self.service.log_fields.get("worker")
        print(f"{stamp} kmsconf host{'' if worker is None else f' worker {worker}'}: {line}", file=sys.stderr,
              flush=True)

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
    most of the host's cost per exchange. One lazily re-armed timer enforces the
    limits: bind_timeout until a bind is accepted, idle_timeout between PDUs after
    it, and read_timeout for each half of a PDU (header, then body), so a slow
    sender cannot hold a slot (slowloris). A client that reads none of its answers
    is paused, then closed after read_timeout. KMS answers wait in `queued` for the
    turn's commit, and any reply after one waits behind it, so replies keep their order.
    """

    __slots__ = ("host", "config", "transport", "peer", "buffer", "session", "deadline", "timer", "body_started",
                 "paused", "queued", "closing")

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
        self.queued: list[tuple[bytes, Reply]] = []  # (PDU, reply) waiting for this turn's commit, in order
        self.closing = False  # no more PDUs: a reply that closes the connection is queued, or its peer sent EOF

    def connection_made(self, transport: asyncio.Transport) -> None:
        host = self.host
        self.transport = transport
        peername = transport.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peername[0]}:{peername[1]}"
        host.stats.connections += 1
        if not host.admit_connection(self):
            transport.close()
            return
        self.session = host.new_session(host.service, self.config)
        self._arm(self.config.bind_timeout)

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
        if self.queued:  # answers on their way (this turn's commit)
            self._arm(self.config.read_timeout)
            return
        if self.paused:  # its answers backed up and it still reads none within the limit: give the slot back
            self._refuse("client reads none of its answers", abort=True)  # close() would wait for it to read
        elif self.buffer:
            self._refuse(self._cut_short())
        else:
            self.close()

    def _idle_limit(self) -> float:
        return self.config.idle_timeout if self.session is not None and self.session.contexts else self.config.bind_timeout

    def data_received(self, data: bytes) -> None:
        if self.session is None or self.closing:
            return
        try:
            self.host._connections.move_to_end(self)  # the most recently active: the last to make room
        except KeyError:
            pass  # already made room for another
        if not self.buffer and len(data) >= rpc.HEADER_SIZE:
            frag = rpc.peek_frag_length(data)
            if frag == len(data) and frag <= self.config.max_pdu:  # one whole PDU, the common case: no copies
                if self._handle(bytes(data)) and not self.paused:
                    self._arm(self._idle_limit())
                return
        was_empty = not self.buffer
        self.buffer += data
        buffer = self.buffer
        while len(buffer) >= rpc.HEADER_SIZE:
            frag = rpc.peek_frag_length(buffer)
            if frag < rpc.HEADER_SIZE or frag > self.config.max_pdu:
                self._bad_frag_length(frag)
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
            self._arm(self._idle_limit())
        elif was_empty:  # a new PDU began: its header has read_timeout to arrive
            self._arm(self.config.read_timeout)

    def _bad_frag_length(self, frag: int) -> None:
        """A frag_length no PDU may have: the connection is closed."""
        self._refuse(f"frag_length {frag} outside {rpc.HEADER_SIZE}..{self.config.max_pdu}")

    def _handle(self, pdu: bytes) -> bool:
        """Answer one PDU (now, or at the end of the turn); False when no PDU may follow it."""
        reply = self.session.receive(pdu)
        if reply.pending is None and not self.queued:
            return self._deliver(pdu, reply)
        self.queued.append((pdu, reply))
        self.host.queue(self, reply)
        if reply.close:
            self.closing = True
            self.buffer.clear()
            return False
        return True

    def _deliver(self, pdu: bytes, reply: Reply) -> bool:
        """Send one reply; False when the connection closes after it."""
        host = self.host
        if host.on_pdu is not None:
            host.on_pdu(self.peer, pdu, reply)
        host.stats.requests += reply.decision is not None
        if reply.problem or (reply.decision is not None and host.service.events is not None):
            host._log(self.peer, reply.decision, reply.problem)
        if reply.data:
            self.transport.write(reply.data)
        if reply.close:
            self.close()
            return False
        return True

    def send_queued(self) -> None:
        """After the turn's commit: every queued reply, in order."""
        queued, self.queued = self.queued, []
        if self.session is None or self.transport.is_closing():
            return  # the client went away meanwhile (or the host is going); its requests were counted all the same
        for pdu, reply in queued:
            if not self._deliver(pdu, reply):
                return
        if self.closing:
            self.close()  # its peer sent EOF: everything it asked is answered

    def _cut_short(self) -> str:
        return "PDU cut short or sent too slowly" if self.body_started else "RPC header cut short or sent too slowly"

    def _refuse(self, problem: str, abort: bool = False) -> None:
        self.host._log(self.peer, None, problem)
        self.close(abort)

    def release(self) -> None:
        """Give the slot back (the connection is closing)."""
        self.host.release(self)

    def close(self, abort: bool = False) -> None:
        self.buffer.clear()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def eof_received(self) -> bool:
        if self.buffer:
            self._cut_by_eof()
        if self.queued:
            self.closing = True  # answer what it sent first, then close
            return True
        return False  # close our side too

    def _cut_by_eof(self) -> None:
        """The client closed its side in the middle of a PDU: what arrived is logged and dropped."""
        self.host._log(self.peer, None, self._cut_short())
        self.buffer.clear()

    # a client that sends but never reads must not grow our send buffer without bound
    def pause_writing(self) -> None:
        self.transport.pause_reading()
        self.paused = True
        self.host.stats.paused += 1
        self._arm(self.config.read_timeout)

    def resume_writing(self) -> None:
        self.paused = False
        self.transport.resume_reading()
        self._arm(self.config.read_timeout if self.buffer else self._idle_limit())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.session is not None:
            self.session = None
            self.release()


class HostThread:
    """A reference host on its own event loop in a background thread (embedded use, tests)."""

    def __init__(self, config: HostConfig, loop: str = "auto", service: KmsService | None = None,
                 host: Callable[..., ReferenceHost] = ReferenceHost):
        self.host = host(config, service)
        self._loop = new_event_loop(loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="kms-reference-host", daemon=True)

    def start(self, sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on the configured address, or on `sock` (bound already: one made in a network namespace)."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.host.start(sock), self._loop).result(10)

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
