"""The exchange runner: it owns the socket, sends PDUs, and turns every answer into a typed outcome.

The suite, the fuzzer, replay and the reference client talk to a host only through a
`Session` (one TCP connection) or a `Runner` (a host address that opens sessions). Every
PDU sent and received is kept in the session's transcript, and `classify` (net.outcomes)
is the only place where bytes become a verdict-ready outcome.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from conformance.wire import framing, ndr, rpc
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest

from .outcomes import (Activation, AlterContextResp, BindAck, Closed, Outcome, SentRequest, Silent, Undecodable,
                       Unreachable, classify)

Transcript = list[tuple[str, bytes]]  # ("client" | "host", one PDU or raw bytes), in order


@dataclass(frozen=True)
class BindOptions:
    ndr32: bool = True
    ndr64: bool = True
    btfn: bool = True
    multiplex: bool = True
    prefer_ndr64: bool = True  # use NDR64 when the host accepts it

    def contexts(self, interface: uuid.UUID = rpc.KMS_INTERFACE) -> list[rpc.ContextElement]:
        syntaxes = ([(rpc.NDR32, 2)] if self.ndr32 else []) + ([(rpc.NDR64, 1)] if self.ndr64 else [])
        if self.btfn:
            syntaxes.append((rpc.btfn_uuid(), 1))
        return [rpc.ContextElement(i, interface, rpc.KMS_INTERFACE_VERSION, (s,)) for i, s in enumerate(syntaxes)]

    @property
    def flags(self) -> int:
        return rpc.FIRST_LAST | (rpc.PFC_CONC_MPX if self.multiplex else 0)


# the NDR32-only bind (call 2) that the load generator and the fuzzer's mutations start from
NDR32_BIND = rpc.Bind(BindOptions(ndr64=False, btfn=False).contexts(),
                      rpc.Header(rpc.PType.BIND, rpc.FIRST_LAST | rpc.PFC_CONC_MPX, 2)).encode()


class PduStreamError(ConnectionError):
    """The peer sent bytes that cannot start a PDU (a frag_length shorter than the header)."""


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"the host closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_pdu(sock: socket.socket) -> bytes:
    """Exactly one PDU, as long as its frag_length says; ConnectionError if the peer closes first."""
    header = _recv_exactly(sock, rpc.HEADER_SIZE)
    frag = rpc.peek_frag_length(header)
    if frag < rpc.HEADER_SIZE:
        raise PduStreamError(f"frag_length {frag}, shorter than the RPC header")
    return header + _recv_exactly(sock, frag - rpc.HEADER_SIZE)


def no_pdu(exc: BaseException, started: float) -> tuple[Outcome, str]:
    """A read that gave no PDU: its outcome, and why the stream is over (after a silence too: what could
    follow might be the rest of a PDU, never the start of one)."""
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return classify(None, timed_out=round(time.monotonic() - started, 3)), "no answer within the timeout"
    if isinstance(exc, ConnectionResetError):
        why = "the host reset the connection"
    elif isinstance(exc, asyncio.IncompleteReadError):
        why = f"the host closed the connection after {len(exc.partial)} of {exc.expected} bytes"
    else:
        why = str(exc) if isinstance(exc, ConnectionError) else exc.strerror or str(exc)
    return Closed(why), why


class NotNegotiated(Exception):
    """Binding gave no usable KMS context; `outcome` says what the host answered instead."""

    def __init__(self, stage: str, outcome: Outcome):
        super().__init__(f"{stage}: {outcome.describe()}")
        self.stage, self.outcome = stage, outcome


class Session:
    """One TCP connection to a KMS host. Raises OSError only when it cannot connect."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, transcript: Transcript | None = None,
                 on_request: Callable[[KmsRequest], None] | None = None,
                 on_answer: Callable[[Outcome], None] | None = None):
        self.timeout = timeout
        self.on_request = on_request  # told of every KMS request sent (the run's footprint)
        self.on_answer = on_answer  # told of every request's outcome (counts seen over a run)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.call_id = 2
        self.contexts: dict[int, bool] = {}  # accepted cont_id -> NDR64
        self.transcript: Transcript = transcript if transcript is not None else []
        self.closed: str | bool = False  # why the stream is over: the host closed or reset it, or fell silent
        self.half_closed = False  # we said EOF: nothing more may be sent

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- bytes ---
    def send(self, data: bytes) -> bool:
        """Send raw bytes; False when the connection is gone (why: `self.closed`)."""
        self.transcript.append(("client", data))
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except socket.timeout:
            self.closed = "the host took no more bytes within the timeout"
        except OSError as exc:  # a reset, an abort, an unreachable network: the connection is gone either way
            self.closed = f"the host closed the connection before we sent ({exc.strerror or exc})"
        return False

    def half_close(self) -> None:
        """Nothing more will come from us: a host waiting for the rest of a PDU sees EOF."""
        self.half_closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def receive(self, sent: SentRequest | None = None) -> Outcome:
        """The host's next answer, classified. After a close or a silence the stream is over: what could
        follow might be the rest of a PDU, never the start of one."""
        if self.closed:
            return Closed(self.closed if isinstance(self.closed, str) else "the host had already closed the connection")
        started = time.monotonic()
        try:
            data = read_pdu(self.sock)
        except OSError as exc:  # a silence, a reset, a close mid-PDU (PduStreamError among them)
            outcome, self.closed = no_pdu(exc, started)
            return outcome
        self.transcript.append(("host", data))
        return classify(data, sent=sent)

    def exchange(self, data: bytes, sent: SentRequest | None = None) -> Outcome:
        self.send(data)
        return self.receive(sent)  # a Closed saying why, when the send found the connection gone

    # --- DCE/RPC ---
    def bind(self, options: BindOptions = BindOptions(), *, alter: bool = False,
             contexts: list[rpc.ContextElement] | None = None, max_xmit: int = rpc.DEFAULT_FRAG,
             max_recv: int = rpc.DEFAULT_FRAG) -> Outcome:
        """bind (or alter_context); accepted contexts are remembered for request()."""
        ptype = rpc.PType.ALTER_CONTEXT if alter else rpc.PType.BIND
        contexts = options.contexts() if contexts is None else contexts
        pdu = rpc.Bind(contexts, rpc.Header(ptype, options.flags, self.call_id), max_xmit=max_xmit, max_recv=max_recv)
        outcome = self.exchange(pdu.encode())
        if isinstance(outcome, (BindAck, AlterContextResp)):
            for ctx, result in zip(contexts, outcome.pdu.results):
                if result.result == rpc.ACCEPTANCE:
                    self.contexts[ctx.cont_id] = result.transfer == rpc.NDR64
        return outcome

    def negotiate(self, options: BindOptions = BindOptions()) -> tuple[int, bool]:
        """Bind and pick the context to use, sending alter_context for NDR32 when that is what is wanted."""
        outcome = self.bind(options)
        if not isinstance(outcome, BindAck):
            raise NotNegotiated("bind", outcome)
        wanted = [c for c, is64 in self.contexts.items() if is64 == (options.prefer_ndr64 and options.ndr64)]
        if wanted:
            return wanted[0], self.contexts[wanted[0]]
        if self.contexts and not (options.ndr32 and not options.prefer_ndr64):
            cont_id = next(iter(self.contexts))
            return cont_id, self.contexts[cont_id]
        if options.ndr32:
            # as vlmcs does: the host refused NDR32 in favour of NDR64, ask for NDR32 alone
            alter = self.bind(options, alter=True, contexts=[rpc.ContextElement(0, transfers=((rpc.NDR32, 2),))])
            if not isinstance(alter, AlterContextResp):
                raise NotNegotiated("alter_context", alter)
            if 0 in self.contexts:
                return 0, self.contexts[0]
        raise NotNegotiated("bind", outcome)

    def request(self, payload: bytes, cont_id: int, ndr64: bool, *, opnum: int = 0,
                request: KmsRequest | None = None) -> Outcome:
        """One RequestActivation call; `request` (what the payload seals) lets the answer be opened and checked."""
        stub = ndr.encode_request_stub(payload, ndr64)
        call_id = self.call_id
        pdu = rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, call_id), cont_id, opnum)
        self.call_id += 1
        if request is not None and self.on_request is not None:
            self.on_request(request)
        outcome = self.exchange(pdu.encode(), SentRequest(request, payload, ndr64, call_id))
        if self.on_answer is not None:
            self.on_answer(outcome)
        return outcome

    def request_activation(self, request: KmsRequest, cont_id: int, ndr64: bool,
                           payload: bytes | None = None) -> Activation:
        """One RequestActivation call on an established context (a fresh IV unless `payload` is given)."""
        payload = framing.seal_request(request, os.urandom(16)) if payload is None else payload
        try:
            opened = framing.open_request(payload, allow_minor=True)
        except DecodeError:
            opened = None  # a deliberately malformed payload; still sent
        outcome = self.request(payload, cont_id, ndr64, request=request)
        return Activation(request, payload, outcome, "request", ndr64, opened, self.transcript)


class Runner:
    """A host address; every session it opens reports its transcript to `on_session` (evidence, footprint)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0,
                 on_session: Callable[[Transcript], None] | None = None,
                 on_request: Callable[[KmsRequest], None] | None = None,
                 on_answer: Callable[[Outcome], None] | None = None,
                 on_connect_error: Callable[[OSError], None] | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.on_session, self.on_request, self.on_answer = on_session, on_request, on_answer
        self.on_connect_error = on_connect_error  # told when a connection cannot be opened: is the host down?

    def session(self) -> Session:
        transcript: Transcript = []
        if self.on_session is not None:
            self.on_session(transcript)  # the same list: it fills as the check runs
        try:
            return Session(self.host, self.port, self.timeout, transcript, self.on_request, self.on_answer)
        except OSError as exc:
            if self.on_connect_error is not None:
                self.on_connect_error(exc)
            raise

    def activate(self, request: KmsRequest, options: BindOptions = BindOptions(),
                 payload: bytes | None = None) -> Activation:
        """bind, [alter_context], request on a new connection; every way it can end is an outcome."""
        payload = framing.seal_request(request, os.urandom(16)) if payload is None else payload
        try:
            session = self.session()
        except OSError as exc:
            return Activation(request, payload, Unreachable(str(exc)), "connect")
        with session:
            try:
                cont_id, ndr64 = session.negotiate(options)
            except NotNegotiated as exc:
                return Activation(request, payload, exc.outcome, exc.stage, transcript=list(session.transcript))
            result = session.request_activation(request, cont_id, ndr64, payload)
            result.transcript = list(session.transcript)
            return result

    def send_raw(self, data: bytes, *, half_close: bool = True) -> tuple[Outcome, Transcript]:
        """Raw bytes on a fresh connection (then EOF, unless told otherwise) and the one answer they get."""
        try:
            session = self.session()
        except OSError as exc:
            return Unreachable(str(exc)), []
        with session:
            session.send(data)
            if half_close:
                session.half_close()
            return session.receive(), list(session.transcript)

    def bind_then(self, first: bytes, second: bytes, sent: SentRequest | None = None) -> tuple[Outcome, Transcript]:
        """A (possibly malformed) bind, then a (possibly malformed) request on the same connection: the
        fuzzer's exchange, judged by the answer to the second. A close or silence after the first ends it, and
        so does a first PDU shorter than its frag_length (the connection is half-closed after it)."""
        try:
            session = self.session()
        except OSError as exc:
            return Unreachable(str(exc)), []
        # closed with a reset, not a FIN, as AsyncSession closes: no TIME_WAIT left per exchange
        session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with session:
            session.send(first)
            if not whole_pdu(first):
                session.half_close()  # nothing more is coming: let the host see EOF rather than wait
            answer = session.receive()
            if isinstance(answer, (Closed, Silent, Undecodable)) or session.half_closed:
                return answer, list(session.transcript)
            session.send(second)
            session.half_close()
            return session.receive(sent), list(session.transcript)


def whole_pdu(data: bytes) -> bool:
    """`data` holds at least the PDU its header announces: a host has nothing more to wait for."""
    return len(data) >= rpc.HEADER_SIZE and rpc.peek_frag_length(data) <= len(data)


class AsyncSession:
    """One TCP connection driven by asyncio: several of them keep exchanges in flight at once (the fuzzer's
    --connections). Same transcript and outcomes as `Session`; it remembers the contexts the host accepted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float,
                 transcript: Transcript):
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.transcript = transcript
        self.contexts: dict[int, bool] = {}  # accepted cont_id -> NDR64
        self.closed: str | bool = False  # why the stream is over, as Session's
        self.half_closed = False
        self._bind: bytes | None = None  # the last bind or alter_context sent, until it is answered

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 10.0) -> "AsyncSession":
        """Raises OSError (or TimeoutError) when it cannot connect."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, timeout, [])

    def close(self) -> None:
        # a reset, not a FIN: thousands of connections a second in TIME_WAIT would slow every connect() down
        self.writer.transport.abort()

    def send(self, data: bytes) -> bool:
        """Queue raw bytes; False when the connection is gone or we said EOF."""
        self.transcript.append(("client", data))
        if self.closed or self.half_closed or self.writer.is_closing():
            self.closed = self.closed or "the host closed the connection before we sent"
            return False
        self.writer.write(data)
        if len(data) >= 3 and rpc.peek_ptype(data) in (rpc.PType.BIND, rpc.PType.ALTER_CONTEXT):
            self._bind = data
        return True

    def half_close(self) -> None:
        self.half_closed = True
        if not self.closed and self.writer.can_write_eof():
            try:
                self.writer.write_eof()
            except OSError:
                pass

    async def receive(self, sent: SentRequest | None = None) -> Outcome:
        """The host's next answer, classified (Silent after `timeout` seconds)."""
        if self.closed:
            return Closed(self.closed if isinstance(self.closed, str) else "the host had already closed the connection")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                header = await self.reader.readexactly(rpc.HEADER_SIZE)
                frag = rpc.peek_frag_length(header)
                if frag < rpc.HEADER_SIZE:
                    raise PduStreamError(f"frag_length {frag}, shorter than the RPC header")
                data = header + await self.reader.readexactly(frag - rpc.HEADER_SIZE)
        except (OSError, asyncio.IncompleteReadError) as exc:
            outcome, self.closed = no_pdu(exc, started)
            return outcome
        self.transcript.append(("host", data))
        outcome = classify(data, sent=sent)
        if isinstance(outcome, (BindAck, AlterContextResp)) and self._bind is not None:
            self._note_contexts(self._bind, outcome)
        self._bind = None
        return outcome

    def _note_contexts(self, bind: bytes, ack: BindAck | AlterContextResp) -> None:
        for cont_id, result in zip(_offered(bind), ack.pdu.results):
            if result.result == rpc.ACCEPTANCE:
                self.contexts[cont_id] = result.transfer == rpc.NDR64


@functools.lru_cache(maxsize=1024)
def _offered(bind: bytes) -> tuple[int, ...]:
    """The cont_ids a bind of ours offered (none when it is too malformed to say); most binds are the same bytes."""
    try:
        return tuple(ctx.cont_id for ctx in rpc.decode_pdu(bind).contexts)
    except (DecodeError, AttributeError):
        return ()
