"""The DCE/RPC half of the reference host: one connection's PDUs in, replies out (PROTOCOL.md 2, H1-H5, H13)."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import NamedTuple

from conformance.wire import hresult, ndr, rpc
from conformance.wire.errors import DecodeError

from .config import HostConfig
from .service import Admitted, KmsService, Decision

_assoc_groups = itertools.count(random.randrange(0x10000000, 0x7FFFFFFF))
# the fast path's one unpack of a request's header and body head, and one pack of a response's (rpc's structs)
_REQUEST_HEAD, _unpack_request = rpc.REQUEST_PDU_HEAD.size, rpc.REQUEST_PDU_HEAD.unpack_from
_RESPONSE_HEAD, _pack_response = rpc.RESPONSE_PDU_HEAD.size, rpc.RESPONSE_PDU_HEAD.pack
# answers, which a client never sends: treated like unknown types
CLIENT_NEVER_SENDS = {rpc.PType.RESPONSE, rpc.PType.FAULT, rpc.PType.BIND_ACK, rpc.PType.BIND_NAK,
                      rpc.PType.ALTER_CONTEXT_RESP}


class Pending(NamedTuple):
    """A KMS request waiting for its count: what its answer needs."""

    admitted: Admitted
    ndr64: bool
    call_id: int
    cont_id: int


@dataclass(slots=True)
class Reply:
    data: bytes | None  # bytes to send, or None
    close: bool = False  # close the connection after sending
    decision: Decision | None = None  # the KMS decision of a request
    problem: str = ""  # why a PDU was refused, for the event log
    malformed: bool = False  # the PDU could not be read (not merely refused: an opnum, a context)
    pending: Pending | None = None  # set by `receive` until `finish`


class RpcSession:
    def __init__(self, service: KmsService, config: HostConfig):
        self.service = service
        self.config = config
        self.contexts: dict[int, bool] = {}  # accepted cont_id -> NDR64
        self.assoc_group = 0

    def _reply_header(self, ptype: rpc.PType, request: rpc.Header, flags: int = rpc.FIRST_LAST) -> rpc.Header:
        return rpc.Header(ptype, flags, request.call_id, drep=request.drep)

    def _fault(self, header: rpc.Header, status: int, cont_id: int = 0) -> bytes:
        flags = rpc.FIRST_LAST | rpc.PFC_DID_NOT_EXECUTE
        return rpc.Fault(status, self._reply_header(rpc.PType.FAULT, header, flags), cont_id).encode()

    def handle(self, data: bytes) -> Reply:
        """One PDU in, its complete reply out (a KMS request counted and committed on its own)."""
        reply = self.receive(data)
        if reply.pending is not None:
            self.finish(reply, self.service.count_all([reply.pending.admitted])[0])
        return reply

    def receive(self, data: bytes) -> Reply:
        """As `handle`, except that a KMS request that passed every check comes back with `pending` set and
        no data: the host counts all the requests of one event-loop turn in one transaction, then `finish`es each."""
        if len(data) >= _REQUEST_HEAD:
            vers, minor, ptype, flags, drep, frag, auth, call_id, _hint, cont_id, opnum = _unpack_request(data)
            # the one header decode of the common case; anything unusual takes the full path below
            if (ptype == rpc.PType.REQUEST and vers == 5 and minor == 0 and drep == rpc.DREP_LE and not auth
                    and frag == len(data) and flags & rpc.FIRST_LAST == rpc.FIRST_LAST):
                return self._request(call_id, flags, cont_id, opnum, data[_REQUEST_HEAD:])
        return self._decode_and_handle(data)

    def finish(self, reply: Reply, count: int) -> None:
        """Seal the answer of a pending request once it is counted (and committed)."""
        pending = reply.pending
        assert pending is not None
        decision = self.service.answer(pending.admitted, count)
        assert decision.payload is not None  # an admitted request is always answered
        stub = ndr.encode_response_stub(decision.payload, pending.ndr64)
        reply.data = self._response(pending.call_id, pending.cont_id, stub)
        reply.decision = decision
        reply.pending = None

    def _decode_and_handle(self, data: bytes) -> Reply:
        """Any PDU: decoded once; if its body does not decode, its header alone decides the answer."""
        try:
            pdu = rpc.decode_pdu(data)
        except DecodeError as exc:
            return self._undecodable(data, exc)
        header = pdu.header
        refused = self._refuse_header(header)
        if refused is not None:
            return refused
        if header.flags & rpc.FIRST_LAST != rpc.FIRST_LAST:
            # KMS never fragments; refuse rather than reassemble (PROTOCOL.md 2.2)
            return Reply(self._fault(header, hresult.NCA_S_PROTO_ERROR), problem="fragmented PDU")
        if isinstance(pdu, rpc.Bind):
            return self._bind(pdu)
        assert isinstance(pdu, rpc.Request)  # every other type a client may send was refused above
        return self._request(header.call_id, header.flags, pdu.cont_id, pdu.opnum, pdu.stub)

    def _undecodable(self, data: bytes, error: DecodeError) -> Reply:
        try:
            header, _ = rpc.Header.decode(data)
        except DecodeError as exc:
            return Reply(None, close=True, problem=str(exc), malformed=True)
        refused = self._refuse_header(header)
        if refused is not None:
            return refused
        if header.ptype == rpc.PType.REQUEST:
            return Reply(self._fault(header, hresult.NCA_S_PROTO_ERROR), problem=str(error), malformed=True)
        return Reply(None, close=True, problem=str(error), malformed=True)

    def _refuse_header(self, header: rpc.Header) -> Reply | None:
        """The header checks, in order: data representation, RPC version, a type a client may send."""
        if header.drep != rpc.DREP_LE or header.auth_length:
            return Reply(None, close=True, problem="unsupported data representation or authentication", malformed=True)
        if (header.vers, header.vers_minor) != (5, 0):
            version = f"RPC version {header.vers}.{header.vers_minor}"
            if header.ptype in (rpc.PType.BIND, rpc.PType.ALTER_CONTEXT):
                nak = rpc.BindNak(rpc.BIND_NAK_PROTOCOL_VERSION, [(5, 0)], self._reply_header(rpc.PType.BIND_NAK, header))
                return Reply(nak.encode(), close=True, problem=version, malformed=True)
            return Reply(self._fault(header, hresult.NCA_S_PROTO_ERROR), close=True, problem=version, malformed=True)
        if header.ptype not in rpc.PType.__members__.values() or header.ptype in CLIENT_NEVER_SENDS:
            return self._unexpected_type(header)
        return None

    def _unexpected_type(self, header: rpc.Header) -> Reply:
        """A PDU of a type no client sends: closed, unanswered."""
        return Reply(None, close=True, problem=f"PDU type {header.ptype} not expected from a client", malformed=True)

    def _context_result(self, ctx: rpc.ContextElement, chosen: tuple[int, bool] | None) -> rpc.ContextResult:
        for syntax, _version in ctx.transfers:
            features = rpc.btfn_features(syntax)
            if features is not None:
                return rpc.ContextResult(rpc.NEGOTIATE_ACK, features & rpc.BTFN_FEATURES)
        if not self._serves(ctx):
            return rpc.ContextResult(rpc.PROVIDER_REJECTION, rpc.REASON_ABSTRACT_SYNTAX)
        return self._transfer_result(ctx, chosen)

    def _serves(self, ctx: rpc.ContextElement) -> bool:
        """The context names the KMS interface, in its version."""
        return ctx.abstract == rpc.KMS_INTERFACE and ctx.abstract_version == rpc.KMS_INTERFACE_VERSION

    def _transfer_result(self, ctx: rpc.ContextElement, chosen: tuple[int, bool] | None) -> rpc.ContextResult:
        """A KMS context's result: accepted if it is the one chosen, else its transfer syntaxes rejected."""
        if chosen is not None and chosen[0] == ctx.cont_id:
            syntax = rpc.NDR64 if chosen[1] else rpc.NDR32
            return rpc.ContextResult(rpc.ACCEPTANCE, 0, syntax, rpc.TRANSFER_VERSIONS[syntax])
        return rpc.ContextResult(rpc.PROVIDER_REJECTION, rpc.REASON_TRANSFER_SYNTAXES)

    def _choose(self, contexts: list[rpc.ContextElement]) -> tuple[int, bool] | None:
        """The one KMS context to accept: NDR64 if this host speaks it and it is offered, else NDR32."""
        offered = [
            (ctx.cont_id, syntax)
            for ctx in contexts
            if ctx.abstract == rpc.KMS_INTERFACE
            for syntax, version in ctx.transfers
            if rpc.TRANSFER_VERSIONS.get(syntax) == version
        ]
        for wanted in ([rpc.NDR64] if self.config.uses_ndr64 else []) + [rpc.NDR32]:
            for cont_id, syntax in offered:
                if syntax == wanted:
                    return cont_id, syntax == rpc.NDR64
        return None

    def _bind(self, bind: rpc.Bind) -> Reply:
        is_alter = bind.header.ptype == rpc.PType.ALTER_CONTEXT
        chosen = self._choose(bind.contexts)
        results = [self._context_result(ctx, chosen) for ctx in bind.contexts]
        for ctx, result in zip(bind.contexts, results):
            if result.result == rpc.ACCEPTANCE:
                self.contexts[ctx.cont_id] = result.transfer == rpc.NDR64
        if not self.assoc_group:
            self.assoc_group = self._new_assoc_group(bind)
        ptype = rpc.PType.ALTER_CONTEXT_RESP if is_alter else rpc.PType.BIND_ACK
        ack = rpc.BindAck(
            results,
            self._reply_header(ptype, bind.header, rpc.FIRST_LAST | self._ack_mpx(bind, is_alter)),
            bind.max_xmit,
            bind.max_recv,
            self.assoc_group,
            b"" if is_alter else f"{self.config.port}\0".encode("ascii"),
        )
        return Reply(ack.encode())

    @staticmethod
    def _new_assoc_group(bind: rpc.Bind) -> int:
        """The association group of the first bind: the client's own, or a new one."""
        return bind.assoc_group or next(_assoc_groups)

    @staticmethod
    def _ack_mpx(bind: rpc.Bind, is_alter: bool) -> int:
        """bind_ack mirrors the client's multiplex bit; alter_context_resp never sets it (vlmcs warns otherwise)."""
        return 0 if is_alter else bind.header.flags & rpc.PFC_CONC_MPX

    def _request(self, call_id: int, flags: int, cont_id: int, opnum: int, stub: bytes) -> Reply:
        ndr64 = self.contexts.get(cont_id)
        if ndr64 is None or opnum != 0:
            return self._refused_request(call_id, flags, cont_id, opnum, stub, ndr64)
        return self._serve(call_id, cont_id, ndr64, stub)

    def _refused_request(self, call_id: int, flags: int, cont_id: int, opnum: int, stub: bytes,
                         ndr64: bool | None) -> Reply:
        """A request on a context never accepted, or for an operation other than RequestActivation: a fault."""
        if ndr64 is None:
            return Reply(self._fault(self._header(call_id, flags), hresult.NCA_S_UNK_IF, cont_id),
                         problem=f"request on context {cont_id}, not accepted")
        return Reply(self._fault(self._header(call_id, flags), hresult.NCA_S_OP_RNG_ERROR, cont_id),
                     problem=f"opnum {opnum}")

    def _serve(self, call_id: int, cont_id: int, ndr64: bool, stub: bytes) -> Reply:
        """A RequestActivation: admitted (pending its count), or answered with the refusal."""
        try:
            payload = ndr.decode_request_stub(stub, ndr64)
        except DecodeError as exc:
            decision = Decision(None, hresult.E_INVALID_DATA, reason=str(exc))
        else:
            admitted = self.service.admit(payload)
            if not isinstance(admitted, Decision):
                return Reply(None, pending=Pending(admitted, ndr64, call_id, cont_id))
            decision = admitted
        if decision.payload is None:
            stub = ndr.encode_error_stub(decision.hresult, ndr64)
        else:
            stub = ndr.encode_response_stub(decision.payload, ndr64)
        return Reply(self._response(call_id, cont_id, stub), decision=decision)

    @staticmethod
    def _header(call_id: int, flags: int) -> rpc.Header:
        return rpc.Header(rpc.PType.REQUEST, flags, call_id)

    def _response(self, call_id: int, cont_id: int, stub: bytes) -> bytes:
        """The response PDU, packed in one go (what rpc.Response(...).encode() gives, without its objects)."""
        return _pack_response(5, 0, rpc.PType.RESPONSE, rpc.FIRST_LAST, rpc.DREP_LE, _RESPONSE_HEAD + len(stub), 0,
                              call_id, len(stub), cont_id, 0, 0) + stub
