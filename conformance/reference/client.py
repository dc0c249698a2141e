"""The reference KMS client: bind variants, one or more requests, full response verification (PROTOCOL.md C2-C5)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from conformance.wire import framing, hresult, ndr, rpc
from conformance.wire.epid import Epid
from conformance.wire.layout import IV
from conformance.wire.exchange import request_fields, response_fields
from conformance.wire.messages import DecodeError, KmsRequest, filetime_now


class RpcError(Exception):
    """The host answered at the RPC level with something other than what the client asked for."""


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


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"host closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_pdu(sock: socket.socket) -> bytes:
    """Exactly one PDU, as long as its frag_length says; ConnectionError if the peer closes first."""
    header = _recv_exactly(sock, rpc.HEADER_SIZE)
    frag = rpc.peek_frag_length(header)
    if frag < rpc.HEADER_SIZE:
        raise RpcError(f"peer sent frag_length {frag}, shorter than the RPC header")
    return header + _recv_exactly(sock, frag - rpc.HEADER_SIZE)


class RpcConnection:
    """One TCP connection speaking DCE/RPC to a KMS host; every PDU sent and received is kept."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.call_id = 2
        self.contexts: dict[int, bool] = {}  # accepted cont_id -> NDR64
        self.transcript: list[tuple[str, bytes]] = []  # ("client" | "host", pdu)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RpcConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.transcript.append(("client", data))
        self.sock.sendall(data)

    def receive(self) -> bytes:
        data = read_pdu(self.sock)
        self.transcript.append(("host", data))
        return data

    def exchange(self, data: bytes) -> rpc.Pdu:
        self.send(data)
        return rpc.decode_pdu(self.receive())

    def bind(self, options: BindOptions = BindOptions(), alter: bool = False,
             contexts: list[rpc.ContextElement] | None = None) -> rpc.BindAck:
        ptype = rpc.PType.ALTER_CONTEXT if alter else rpc.PType.BIND
        contexts = options.contexts() if contexts is None else contexts
        bind = rpc.Bind(contexts, rpc.Header(ptype, options.flags, self.call_id))
        ack = self.exchange(bind.encode())
        if not isinstance(ack, rpc.BindAck):
            raise RpcError(f"{ptype.name.lower()} answered with {type(ack).__name__}")
        for ctx, result in zip(contexts, ack.results):
            if result.result == rpc.ACCEPTANCE:
                self.contexts[ctx.cont_id] = result.transfer == rpc.NDR64
        return ack

    def negotiate(self, options: BindOptions = BindOptions()) -> tuple[int, bool]:
        """Bind and pick the context to use, sending alter_context for NDR32 when that is what is wanted."""
        self.bind(options)
        wanted = [c for c, is64 in self.contexts.items() if is64 == (options.prefer_ndr64 and options.ndr64)]
        if wanted:
            return wanted[0], self.contexts[wanted[0]]
        if self.contexts and not (options.ndr32 and not options.prefer_ndr64):
            cont_id = next(iter(self.contexts))
            return cont_id, self.contexts[cont_id]
        if options.ndr32:
            # as vlmcs does: the host refused NDR32 in favour of NDR64, ask for NDR32 alone
            alter_ctx = [rpc.ContextElement(0, transfers=((rpc.NDR32, 2),))]
            self.bind(options, alter=True, contexts=alter_ctx)
            if 0 in self.contexts:
                return 0, self.contexts[0]
        raise RpcError("the host accepted no usable transfer syntax for the KMS interface")

    def call(self, payload: bytes, cont_id: int, ndr64: bool, opnum: int = 0) -> rpc.Pdu:
        stub = ndr.encode_request_stub(payload, ndr64)
        request = rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, self.call_id), cont_id, opnum)
        self.call_id += 1
        return self.exchange(request.encode())


@dataclass
class ActivationResult:
    request: KmsRequest
    request_payload: bytes
    response_pdu: rpc.Pdu | None = None
    opened_request: framing.OpenedRequest | None = None
    response: framing.OpenedResponse | None = None
    hresult: int | None = None
    fault: int | None = None
    ndr64: bool = False
    problems: list[str] = field(default_factory=list)
    transcript: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.response is not None and not self.problems

    @property
    def activated(self) -> bool:
        return self.verified and self.response.response.count >= self.request.n_policy

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": request_fields(self.opened_request) if self.opened_request else None}
        if self.response is not None:
            out["response"] = response_fields(self.response) | {"verified": self.verified}
        elif self.hresult is not None:
            out["response"] = {"hresult": f"0x{self.hresult:08X}", "hresult_name": hresult.name(self.hresult)}
        elif self.fault is not None:
            out["response"] = {"fault": f"0x{self.fault:08X}", "fault_name": hresult.name(self.fault)}
        else:
            out["response"] = None
        out["ndr"] = 64 if self.ndr64 else 32
        out["activated"] = self.activated
        out["problems"] = list(self.problems)
        return out


def check_response(request: KmsRequest, opened: framing.OpenedResponse) -> list[str]:
    """What vlmcs and a Windows client check (PROTOCOL.md 3.3, C4), as readable problems."""
    problems = [f"{name} check failed" for name in opened.failed_checks()]
    r = opened.response
    if r.version != request.version:
        problems.append(f"response version {r.major}.{r.minor} differs from request {request.major}.{request.minor}")
    if r.cmid != request.cmid:
        problems.append(f"CMID echo {r.cmid} differs from request {request.cmid}")
    if r.request_time != request.request_time:
        problems.append(f"request time echo {r.request_time} differs from request {request.request_time}")
    try:
        Epid.parse(r.epid)
    except DecodeError as exc:
        problems.append(str(exc))
    return problems


def build_request(edition, *, cmid: uuid.UUID | None = None, workstation: str | None = None,
                  protocol: int | None = None, **fields: Any) -> KmsRequest:
    """A request for a catalog edition with fresh CMID and current time; any field can be overridden."""
    values: dict[str, Any] = {
        "app_id": edition.app_id,
        "sku_id": edition.sku_id,
        "kms_id": edition.kms_id,
        "cmid": cmid or uuid.uuid4(),
        "n_policy": edition.n_policy,
        "request_time": filetime_now(),
        "workstation": workstation if workstation is not None else socket.gethostname()[:63],
        "major": protocol or edition.protocol,
    }
    values.update(fields)
    return KmsRequest(**values)


def exchange_on(conn: RpcConnection, request: KmsRequest, cont_id: int, ndr64: bool,
                payload: bytes | None = None) -> ActivationResult:
    """Send one request on an established context and verify the answer."""
    payload = framing.seal_request(request, os.urandom(16)) if payload is None else payload
    result = ActivationResult(request, payload, ndr64=ndr64)
    try:
        result.opened_request = framing.open_request(payload, allow_minor=True)
    except DecodeError:
        result.opened_request = None  # a deliberately malformed payload; still sent
    reply = conn.call(payload, cont_id, ndr64)
    result.response_pdu = reply
    if isinstance(reply, rpc.Fault):
        result.fault = reply.status
        result.problems.append(f"host answered with fault {hresult.describe(reply.status)}")
        return result
    if not isinstance(reply, rpc.Response):
        result.problems.append(f"host answered the request with {type(reply).__name__}")
        return result
    if reply.header.call_id != conn.call_id - 1:
        result.problems.append(f"response call_id {reply.header.call_id} differs from request {conn.call_id - 1}")
    try:
        body, code = ndr.decode_response_stub(reply.stub, ndr64)
        if body is None:
            result.hresult = code
            result.problems.append(f"host refused: {hresult.describe(code)}")
            return result
        request_iv = payload[IV] if request.major in (5, 6) else b""
        result.response = framing.open_response(body, request_iv)
    except DecodeError as exc:
        result.problems.append(f"response could not be decoded: {exc}")
        return result
    result.problems.extend(check_response(request, result.response))
    if request.major == 6 and result.response.iv == payload[IV]:
        result.problems.append("V6 response IV equals the request IV (an emulator tell)")
    return result


def activate(host: str, port: int, request: KmsRequest, options: BindOptions = BindOptions(),
             timeout: float = 10.0) -> ActivationResult:
    """One full exchange on a new connection: bind, [alter_context], request, verify."""
    with RpcConnection(host, port, timeout) as conn:
        cont_id, ndr64 = conn.negotiate(options)
        result = exchange_on(conn, request, cont_id, ndr64)
        result.transcript = list(conn.transcript)
        return result
