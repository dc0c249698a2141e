"""impacket's rpcrt structures parse the project's PDUs to the same fields (an independent DCE/RPC codec)."""

import uuid

from impacket.dcerpc.v5 import rpcrt
from impacket.uuid import bin_to_uuidtup

from conformance import catalog
from conformance.reference.client import BindOptions, build_request
from conformance.reference.config import HostConfig
from conformance.reference.rpc_session import RpcSession
from conformance.reference.service import KmsService
from conformance.wire import framing, ndr, rpc


def session() -> RpcSession:
    config = HostConfig(port=1688)
    return RpcSession(KmsService(config), config)


def header_fields(raw: bytes) -> dict:
    h = rpcrt.MSRPCHeader(raw)
    return {"type": h["type"], "flags": h["flags"], "frag_len": h["frag_len"], "call_id": h["call_id"],
            "auth_len": h["auth_len"]}


def test_bind_parses_identically():
    bind = rpc.Bind(BindOptions().contexts(), rpc.Header(rpc.PType.BIND, 0x13, 9), max_xmit=5840, max_recv=5840)
    raw = bind.encode()
    assert header_fields(raw) == {"type": 11, "flags": 0x13, "frag_len": len(raw), "call_id": 9, "auth_len": 0}
    body = rpcrt.MSRPCBind(rpcrt.MSRPCHeader(raw)["pduData"])
    assert (body["max_tfrag"], body["max_rfrag"], body["ctx_num"]) == (5840, 5840, 3)
    items = body["ctx_items"]
    for n, ctx in enumerate(bind.contexts):
        item = rpcrt.CtxItem(items[n * 44:(n + 1) * 44])
        assert item["ContextID"] == ctx.cont_id and item["TransItems"] == 1
        assert bin_to_uuidtup(item["AbstractSyntax"]) == (str(rpc.KMS_INTERFACE).upper(), "1.0")
        assert uuid.UUID(bin_to_uuidtup(item["TransferSyntax"])[0]) == ctx.transfer


def test_bind_ack_from_the_reference_host_parses_identically():
    bind = rpc.Bind(BindOptions().contexts(), rpc.Header(rpc.PType.BIND, 0x13, 2))
    raw = session().handle(bind.encode()).data
    ack = rpc.decode_pdu(raw)
    parsed = rpcrt.MSRPCBindAck(raw)
    assert (parsed["type"], parsed["call_id"], parsed["frag_len"]) == (12, 2, len(raw))
    assert (parsed["max_tfrag"], parsed["max_rfrag"], parsed["assoc_group"]) == (ack.max_xmit, ack.max_recv,
                                                                                ack.assoc_group)
    assert str(parsed["SecondaryAddr"]).rstrip("\0") == "1688" and parsed["ctx_num"] == len(ack.results)
    for n, result in enumerate(ack.results):
        item = rpcrt.CtxItemResult(parsed["ctx_items"][n * 24:(n + 1) * 24])
        assert (item["Result"], item["Reason"]) == (result.result, result.reason)
        assert uuid.UUID(bin_to_uuidtup(item["TransferSyntax"])[0]) == result.transfer


def test_request_and_response_parse_identically():
    request = build_request(catalog.load().edition("Windows 7 Enterprise"))
    stub = ndr.encode_request_stub(framing.seal_request(request))
    raw = rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, 3, 5), cont_id=0, opnum=0).encode()
    req = rpcrt.MSRPCRequestHeader(raw)
    assert (req["type"], req["call_id"], req["ctx_id"], req["op_num"], req["alloc_hint"]) == (0, 5, 0, 0, len(stub))
    assert req["pduData"] == stub

    s = session()
    s.handle(rpc.Bind(BindOptions(ndr64=False, btfn=False).contexts(), rpc.Header(rpc.PType.BIND, 3, 5)).encode())
    answer = s.handle(raw).data
    resp = rpcrt.MSRPCRespHeader(answer)
    ours = rpc.decode_pdu(answer)
    assert (resp["type"], resp["call_id"], resp["ctx_id"], resp["alloc_hint"]) == (2, 5, 0, len(ours.stub))
    assert resp["pduData"] == ours.stub
