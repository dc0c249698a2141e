"""The faulty host's DCE/RPC half: the genuine session, with the quirks of binds, requests and replies laid over it."""

from __future__ import annotations

import dataclasses
import struct

from conformance.reference.host.config import HostConfig
from conformance.reference.host.rpc_session import Reply, RpcSession
from conformance.wire import ndr, rpc
from conformance.wire.errors import DecodeError
from conformance.wire.messages import peek_version

from .quirks import Quirk
from .service import FaultyService

_ALLOC_HINT_AT, _ALLOC_HINT_CODE = rpc.RESPONSE_FIELDS["alloc_hint"]


class FaultySession(RpcSession):
    def __init__(self, service: FaultyService, config: HostConfig):
        super().__init__(service, config)
        self.quirks = service.quirks

    def _reply_header(self, ptype: rpc.PType, request: rpc.Header, flags: int = rpc.FIRST_LAST) -> rpc.Header:
        header = super()._reply_header(ptype, request, flags)
        if Quirk.NO_CALL_ID_ECHO in self.quirks:
            header.call_id = 2
        return header

    def _unexpected_type(self, header: rpc.Header) -> Reply:
        if Quirk.ANSWER_UNKNOWN_PTYPE in self.quirks:
            empty = rpc.Response(b"", self._reply_header(rpc.PType.RESPONSE, header))
            return Reply(empty.encode(), close=True, problem=f"PDU type {header.ptype} answered anyway", malformed=True)
        return super()._unexpected_type(header)

    # --- binds ---
    def _bind(self, bind: rpc.Bind) -> Reply:
        quirks = self.quirks
        if (bind.header.ptype == rpc.PType.ALTER_CONTEXT and Quirk.NO_ALTER_CONTEXT in quirks) or (
                Quirk.REQUIRE_MPX in quirks and not bind.header.flags & rpc.PFC_CONC_MPX):
            return Reply(None, close=True, problem="refused by quirk")
        return super()._bind(bind)

    def _choose(self, contexts: list[rpc.ContextElement]) -> tuple[int, bool] | None:
        if Quirk.ACCEPT_FOREIGN_INTERFACE in self.quirks:  # any interface taken for KMS
            contexts = [dataclasses.replace(ctx, abstract=rpc.KMS_INTERFACE) for ctx in contexts]
        if Quirk.REJECT_NDR32 in self.quirks:  # NDR32 as if never offered
            contexts = [dataclasses.replace(ctx, transfers=tuple(t for t in ctx.transfers if t[0] != rpc.NDR32))
                        for ctx in contexts]
        return super()._choose(contexts)

    def _serves(self, ctx: rpc.ContextElement) -> bool:
        return Quirk.ACCEPT_FOREIGN_INTERFACE in self.quirks or super()._serves(ctx)

    def _transfer_result(self, ctx: rpc.ContextElement, chosen: tuple[int, bool] | None) -> rpc.ContextResult:
        if (Quirk.ACCEPT_ALL_SYNTAXES in self.quirks and ctx.abstract == rpc.KMS_INTERFACE and ctx.transfers
                and ctx.transfer in rpc.TRANSFER_VERSIONS):
            return rpc.ContextResult(rpc.ACCEPTANCE, 0, ctx.transfer, rpc.TRANSFER_VERSIONS[ctx.transfer])
        return super()._transfer_result(ctx, chosen)

    def _new_assoc_group(self, bind: rpc.Bind) -> int:
        return 0 if Quirk.ZERO_ASSOC_GROUP in self.quirks else super()._new_assoc_group(bind)

    def _ack_mpx(self, bind: rpc.Bind, is_alter: bool) -> int:
        if Quirk.NO_MPX_MIRROR in self.quirks and not is_alter:
            return rpc.PFC_CONC_MPX
        return super()._ack_mpx(bind, is_alter)

    # --- requests ---
    def _refused_request(self, call_id: int, flags: int, cont_id: int, opnum: int, stub: bytes,
                         ndr64: bool | None) -> Reply:
        if ndr64 is None and Quirk.PROCESS_UNBOUND_CONTEXT in self.quirks:
            ndr64 = False  # served as NDR32
        if ndr64 is not None and (opnum == 0 or Quirk.IGNORE_OPNUM in self.quirks):
            return self._serve(call_id, cont_id, ndr64, stub)
        return super()._refused_request(call_id, flags, cont_id, opnum, stub, ndr64)

    def _serve(self, call_id: int, cont_id: int, ndr64: bool, stub: bytes) -> Reply:
        if Quirk.DROP_V5 in self.quirks:
            try:
                major, _minor = peek_version(ndr.decode_request_stub(stub, ndr64))
            except DecodeError:
                pass
            else:
                if major == 5:
                    return Reply(None, close=True, problem="a V5 request dropped by quirk")
        reply = super()._serve(call_id, cont_id, ndr64, stub)
        if Quirk.CLOSE_AFTER_RESPONSE in self.quirks:
            reply.close = True
        return reply

    def _response(self, call_id: int, cont_id: int, stub: bytes) -> bytes:
        pdu = super()._response(2 if Quirk.NO_CALL_ID_ECHO in self.quirks else call_id, cont_id, stub)
        if Quirk.BAD_ALLOC_HINT in self.quirks:
            pdu = bytearray(pdu)
            struct.pack_into("<" + _ALLOC_HINT_CODE, pdu, _ALLOC_HINT_AT, 0)
            pdu = bytes(pdu)
        return pdu
