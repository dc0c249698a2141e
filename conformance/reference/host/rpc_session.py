"""The DCE/RPC half of the reference host: one connection's PDUs in, replies out (PROTOCOL.md 2, H1-H5, H13)."""

from __future__ import annotations

import itertools
import random
import struct
from dataclasses import dataclass
from typing import NamedTuple

from conformance.wire import hresult, ndr, rpc
from conformance.wire.errors import DecodeError

from .config import HostConfig
from conformance.faults.quirks import Quirk
from .service import Admitted, KmsService, Outcome

_assoc_groups = itertools.count(random.randrange(0x10000000, 0x7FFFFFFF))
# answers, which a client never sends: treated like unknown types
CLIENT_NEVER_SENDS = {rpc.PType.RESPONSE, rpc.PType.FAULT, rpc.PType.BIND_ACK, rpc.PType.BIND_NAK,
                      rpc.PType.ALTER_CONTEXT_RESP}


# the common header (PROTOCOL.md 2.1) and the request / response body heads (2.5), each in one struct
_REQUEST = struct.Struct("<BBBB4sHHIIHH")
_RESPONSE = struct.Struct("<BBBB4sHHIIHBB")


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
    outcome: Outcome | None = None  # the KMS outcome of a request
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
        call_id = 2 if Quirk.NO_CALL_ID_ECHO in self.config.quirks else request.call_id
        return rpc.Header(ptype, flags, call_id, drep=request.drep)

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
        if len(data) >= _REQUEST.size:
            vers, minor, ptype, flags, drep, frag, auth, call_id, _hint, cont_id, opnum = _REQUEST.unpack_from(data)
            # the one header decode of the common case; anything unusual takes the full path below
            if (ptype == rpc.PType.REQUEST and vers == 5 and minor == 0 and drep == rpc.DREP_LE and not auth
                    and frag == len(data) and flags & rpc.FIRST_LAST == rpc.FIRST_LAST):
                return self._request(call_id, flags, cont_id, opnum, data[_REQUEST.size:])
        return self._decode_and_handle(data)

    def finish(self, reply: Reply, count: int) -> None:
        """Seal the answer of a pending request once it is counted (and committed)."""
        pending = reply.pending
        assert pending is not None
        outcome = self.service.answer(pending.admitted, count)
        assert outcome.payload is not None  # an admitted request is always answered
        stub = ndr.encode_response_stub(outcome.payload, pending.ndr64)
        reply.data = self._response(pending.call_id, pending.cont_id, stub)
        reply.outcome = outcome
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
            if Quirk.ANSWER_UNKNOWN_PTYPE in self.config.quirks:
                empty = rpc.Response(b"", self._reply_header(rpc.PType.RESPONSE, header))
                return Reply(empty.encode(), close=True, problem=f"PDU type {header.ptype} answered anyway",
                             malformed=True)
            return Reply(None, close=True, problem=f"PDU type {header.ptype} not expected from a client",
                         malformed=True)
        return None

    def _context_result(self, ctx: rpc.ContextElement, chosen: tuple[int, bool] | None) -> rpc.ContextResult:
        for syntax, _version in ctx.transfers:
            features = rpc.btfn_features(syntax)
            if features is not None:
                return rpc.ContextResult(rpc.NEGOTIATE_ACK, features & rpc.BTFN_FEATURES)
        foreign = ctx.abstract != rpc.KMS_INTERFACE or ctx.abstract_version != rpc.KMS_INTERFACE_VERSION
        if foreign and Quirk.ACCEPT_FOREIGN_INTERFACE not in self.config.quirks:
            return rpc.ContextResult(rpc.PROVIDER_REJECTION, rpc.REASON_ABSTRACT_SYNTAX)
        quirks = self.config.quirks
        if (Quirk.ACCEPT_ALL_SYNTAXES in quirks and ctx.abstract == rpc.KMS_INTERFACE and ctx.transfers
                and ctx.transfer in rpc.TRANSFER_VERSIONS):
            return rpc.ContextResult(rpc.ACCEPTANCE, 0, ctx.transfer, rpc.TRANSFER_VERSIONS[ctx.transfer])
        if chosen is not None and chosen[0] == ctx.cont_id:
            syntax = rpc.NDR64 if chosen[1] else rpc.NDR32
            return rpc.ContextResult(rpc.ACCEPTANCE, 0, syntax, rpc.TRANSFER_VERSIONS[syntax])
        return rpc.ContextResult(rpc.PROVIDER_REJECTION, rpc.REASON_TRANSFER_SYNTAXES)

    def _choose(self, contexts: list[rpc.ContextElement]) -> tuple[int, bool] | None:
        """The one KMS context to accept: NDR64 if this host speaks it and it is offered, else NDR32."""
        offered = [
            (ctx.cont_id, syntax)
            for ctx in contexts
            if ctx.abstract == rpc.KMS_INTERFACE or Quirk.ACCEPT_FOREIGN_INTERFACE in self.config.quirks
            for syntax, version in ctx.transfers
            if rpc.TRANSFER_VERSIONS.get(syntax) == version
        ]
        syntaxes = ([rpc.NDR64] if self.config.uses_ndr64 else []) + [rpc.NDR32]
        if Quirk.REJECT_NDR32 in self.config.quirks:
            syntaxes.remove(rpc.NDR32)
        for wanted in syntaxes:
            for cont_id, syntax in offered:
                if syntax == wanted:
                    return cont_id, syntax == rpc.NDR64
        return None

    def _bind(self, bind: rpc.Bind) -> Reply:
        is_alter = bind.header.ptype == rpc.PType.ALTER_CONTEXT
        quirks = self.config.quirks
        if (is_alter and Quirk.NO_ALTER_CONTEXT in quirks) or (
                Quirk.REQUIRE_MPX in quirks and not bind.header.flags & rpc.PFC_CONC_MPX):
            return Reply(None, close=True, problem="refused by quirk")
        chosen = self._choose(bind.contexts)
        results = [self._context_result(ctx, chosen) for ctx in bind.contexts]
        for ctx, result in zip(bind.contexts, results):
            if result.result == rpc.ACCEPTANCE:
                self.contexts[ctx.cont_id] = result.transfer == rpc.NDR64
        if not self.assoc_group and Quirk.ZERO_ASSOC_GROUP not in quirks:
            self.assoc_group = bind.assoc_group or next(_assoc_groups)
        # bind_ack mirrors the client's multiplex bit; alter_context_resp never sets it (vlmcs warns otherwise)
        mpx = 0 if is_alter else bind.header.flags & rpc.PFC_CONC_MPX
        if Quirk.NO_MPX_MIRROR in self.config.quirks and not is_alter:
            mpx = rpc.PFC_CONC_MPX
        ptype = rpc.PType.ALTER_CONTEXT_RESP if is_alter else rpc.PType.BIND_ACK
        ack = rpc.BindAck(
            results,
            self._reply_header(ptype, bind.header, rpc.FIRST_LAST | mpx),
            bind.max_xmit,
            bind.max_recv,
            self.assoc_group,
            b"" if is_alter else f"{self.config.port}\0".encode("ascii"),
        )
        return Reply(ack.encode())

    def _request(self, call_id: int, flags: int, cont_id: int, opnum: int, stub: bytes) -> Reply:
        quirks = self.config.quirks
        ndr64 = self.contexts.get(cont_id)
        if ndr64 is None and quirks and Quirk.PROCESS_UNBOUND_CONTEXT in quirks:
            ndr64 = False
        if ndr64 is None:
            return Reply(self._fault(self._header(call_id, flags), hresult.NCA_S_UNK_IF, cont_id),
                         problem=f"request on context {cont_id}, not accepted")
        if opnum != 0 and not (quirks and Quirk.IGNORE_OPNUM in quirks):
            return Reply(self._fault(self._header(call_id, flags), hresult.NCA_S_OP_RNG_ERROR, cont_id),
                         problem=f"opnum {opnum}")
        close = bool(quirks) and Quirk.CLOSE_AFTER_RESPONSE in quirks
        try:
            payload = ndr.decode_request_stub(stub, ndr64)
        except DecodeError as exc:
            outcome = Outcome(None, hresult.E_INVALID_DATA, reason=str(exc))
        else:
            if quirks and Quirk.DROP_V5 in quirks and payload[2:4] == b"\x05\x00":
                return Reply(None, close=True, problem="a V5 request dropped by quirk")
            admitted = self.service.admit(payload)
            if not isinstance(admitted, Outcome):
                return Reply(None, close=close, pending=Pending(admitted, ndr64, call_id, cont_id))
            outcome = admitted
        if outcome.payload is None:
            stub = ndr.encode_error_stub(outcome.hresult, ndr64)
        else:
            stub = ndr.encode_response_stub(outcome.payload, ndr64)
        return Reply(self._response(call_id, cont_id, stub), close=close, outcome=outcome)

    @staticmethod
    def _header(call_id: int, flags: int) -> rpc.Header:
        return rpc.Header(rpc.PType.REQUEST, flags, call_id)

    def _response(self, call_id: int, cont_id: int, stub: bytes) -> bytes:
        """The response PDU, packed in one go (what rpc.Response(...).encode() gives, without its objects)."""
        quirks = self.config.quirks
        if quirks and Quirk.NO_CALL_ID_ECHO in quirks:
            call_id = 2
        hint = 0 if quirks and Quirk.BAD_ALLOC_HINT in quirks else len(stub)
        return _RESPONSE.pack(5, 0, rpc.PType.RESPONSE, rpc.FIRST_LAST, rpc.DREP_LE, _RESPONSE.size + len(stub), 0,
                              call_id, hint, cont_id, 0, 0) + stub
