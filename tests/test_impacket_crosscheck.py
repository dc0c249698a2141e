"""impacket's rpcrt structures (an independent DCE/RPC codec) parse the project's PDUs to the same fields:
a Bind from the reference client's BindOptions, the reference host's BindAck / alter_context_resp,
and a Request / Response pair the host really answered."""

from __future__ import annotations

import uuid

import pytest
from impacket.dcerpc.v5 import rpcrt
from impacket.uuid import bin_to_uuidtup

from conformance import catalog
from conformance.net.runner import BindOptions
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.rpc_session import RpcSession
from conformance.reference.host.service import KmsService
from conformance.wire import framing, ndr, rpc


def session(**config) -> RpcSession:
    cfg = HostConfig(port=1688, **config)
    return RpcSession(KmsService(cfg), cfg)


def syntax(raw20: bytes) -> tuple[uuid.UUID, int]:
    """impacket's 20-byte syntax id -> (UUID, version as the u32 on the wire)."""
    text, version = bin_to_uuidtup(raw20)
    major, minor = (int(x) for x in version.split("."))
    return uuid.UUID(text), major | minor << 16


def assert_header(parsed, pdu: rpc.Pdu, raw: bytes) -> None:
    h = pdu.header
    assert parsed["ver_major"] == h.vers == 5 and parsed["ver_minor"] == h.vers_minor == 0
    assert parsed["type"] == h.ptype
    assert parsed["flags"] == h.flags
    assert parsed["representation"] == int.from_bytes(h.drep, "little") == 0x10
    assert parsed["frag_len"] == len(raw)
    assert parsed["auth_len"] == h.auth_length == 0
    assert parsed["call_id"] == h.call_id


@pytest.mark.parametrize("options", [BindOptions(), BindOptions(ndr64=False), BindOptions(btfn=False),
                                     BindOptions(ndr64=False, btfn=False, multiplex=False)],
                         ids=["ndr32+ndr64+btfn", "ndr32+btfn", "ndr32+ndr64", "ndr32-only-nompx"])
def test_bind_parses_identically(options):
    contexts = options.contexts()
    bind = rpc.Bind(contexts, rpc.Header(rpc.PType.BIND, options.flags, 9))
    raw = bind.encode()
    header = rpcrt.MSRPCHeader(raw)
    assert_header(header, bind, raw)
    assert header["type"] == rpcrt.MSRPC_BIND == 11
    body = rpcrt.MSRPCBind(header["pduData"])
    assert (body["max_tfrag"], body["max_rfrag"], body["assoc_group"]) == (bind.max_xmit, bind.max_recv, 0) \
        == (5840, 5840, 0)
    assert body["ctx_num"] == len(contexts)
    items = body["ctx_items"]
    assert len(items) == 44 * len(contexts)
    for n, ctx in enumerate(contexts):
        item = rpcrt.CtxItem(items[n * 44:(n + 1) * 44])
        assert item["ContextID"] == ctx.cont_id == n
        assert item["TransItems"] == len(ctx.transfers) == 1
        assert bin_to_uuidtup(item["AbstractSyntax"]) == (str(rpc.KMS_INTERFACE).upper(), "1.0")
        assert syntax(item["TransferSyntax"]) == ctx.transfers[0]
    transfers = [syntax(rpcrt.CtxItem(items[n * 44:(n + 1) * 44])["TransferSyntax"])[0] for n in range(len(contexts))]
    assert transfers[0] == rpc.NDR32
    assert (rpc.NDR64 in transfers) == options.ndr64
    assert any(rpc.btfn_features(t) == 3 for t in transfers) == options.btfn


def check_bind_ack(raw: bytes, bind: rpc.Bind, ptype: int, sec_addr: str) -> list:
    ack = rpc.decode_pdu(raw)
    parsed = rpcrt.MSRPCBindAck(raw)
    assert_header(parsed, ack, raw)
    assert parsed["type"] == ptype and parsed["call_id"] == bind.header.call_id
    assert (parsed["max_tfrag"], parsed["max_rfrag"]) == (ack.max_xmit, ack.max_recv) == (bind.max_xmit, bind.max_recv)
    assert parsed["assoc_group"] == ack.assoc_group != 0
    assert parsed["SecondaryAddrLen"] == len(ack.sec_addr)
    assert (parsed["SecondaryAddr"] or "") == sec_addr == ack.sec_addr.rstrip(b"\0").decode()
    assert parsed["Pad"] == ack.pad
    assert parsed["ctx_num"] == len(ack.results) == len(bind.contexts)
    items = parsed.getCtxItems()
    assert len(items) == len(ack.results)
    for item, result in zip(items, ack.results):
        assert (item["Result"], item["Reason"]) == (result.result, result.reason)
        assert syntax(item["TransferSyntax"]) == (result.transfer, result.transfer_version)
    return [(i["Result"], i["Reason"], syntax(i["TransferSyntax"])) for i in items]


def test_bind_ack_from_the_reference_host_parses_identically():
    s = session(host_build=26100)  # a build 9200+ host speaks NDR64
    bind = rpc.Bind(BindOptions().contexts(), rpc.Header(rpc.PType.BIND, 0x13, 2))
    raw = s.handle(bind.encode()).data
    assert len(raw) == 108
    items = check_bind_ack(raw, bind, rpcrt.MSRPC_BINDACK, "1688")
    assert rpcrt.MSRPCBindAck(raw)["flags"] == 0x13  # multiplex bit mirrored
    assert items == [(2, 2, (uuid.UUID(int=0), 0)), (0, 0, (rpc.NDR64, 1)), (3, 3, (uuid.UUID(int=0), 0))]

    # then the alter_context path: NDR32 alone, empty secondary address
    alter = rpc.Bind([rpc.ContextElement(0)], rpc.Header(rpc.PType.ALTER_CONTEXT, 0x13, 2))
    alter_raw = s.handle(alter.encode()).data
    assert len(alter_raw) == 56
    assert check_bind_ack(alter_raw, alter, rpcrt.MSRPC_ALTERCTX_R, "") == [(0, 0, (rpc.NDR32, 2))]
    assert rpcrt.MSRPCBindAck(alter_raw)["assoc_group"] == rpcrt.MSRPCBindAck(raw)["assoc_group"]


def test_bind_ack_of_an_ndr32_host_parses_identically():
    s = session(host_build=7601)
    bind = rpc.Bind(BindOptions(multiplex=False).contexts(), rpc.Header(rpc.PType.BIND, 0x03, 2))
    raw = s.handle(bind.encode()).data
    items = check_bind_ack(raw, bind, rpcrt.MSRPC_BINDACK, "1688")
    assert rpcrt.MSRPCBindAck(raw)["flags"] == 0x03
    assert items == [(0, 0, (rpc.NDR32, 2)), (2, 2, (uuid.UUID(int=0), 0)), (3, 3, (uuid.UUID(int=0), 0))]


@pytest.mark.parametrize("product, ndr64", [("Windows 7 Enterprise", False), ("Windows 8 Enterprise", False),
                                            ("Windows Server 2019 Datacenter", False),
                                            ("Windows Server 2019 Datacenter", True)])
def test_request_and_response_parse_identically(product, ndr64):
    request = build_request(catalog.load().edition(product), workstation="crosscheck.example")
    payload = framing.seal_request(request)
    stub = ndr.encode_request_stub(payload, ndr64)
    s = session()
    bind = rpc.Bind(BindOptions(ndr64=ndr64, btfn=False, ndr32=not ndr64).contexts(),
                    rpc.Header(rpc.PType.BIND, 0x13, 5))
    ack = rpc.decode_pdu(s.handle(bind.encode()).data)
    assert ack.results[0].result == rpc.ACCEPTANCE and ack.results[0].transfer == (rpc.NDR64 if ndr64 else rpc.NDR32)

    req_pdu = rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 5), cont_id=0, opnum=0)
    raw = req_pdu.encode()
    assert len(raw) == {4: 284, 5: 292, 6: 300 if ndr64 else 292}[request.major]
    req = rpcrt.MSRPCRequestHeader(raw)
    assert_header(req, req_pdu, raw)
    assert (req["type"], req["ctx_id"], req["op_num"], req["alloc_hint"]) == (rpcrt.MSRPC_REQUEST, 0, 0, len(stub))
    assert req["uuid"] == b""  # no object UUID
    assert req["pduData"] == stub

    reply = s.handle(raw)
    assert reply.decision is not None and reply.decision.payload is not None
    answer = reply.data
    ours = rpc.decode_pdu(answer)
    resp = rpcrt.MSRPCRespHeader(answer)
    assert_header(resp, ours, answer)
    assert (resp["type"], resp["call_id"], resp["ctx_id"]) == (rpcrt.MSRPC_RESPONSE, 5, 0)
    assert resp["alloc_hint"] == ours.alloc_hint == len(ours.stub)
    assert (resp["cancel_count"], resp["padding"]) == (ours.cancel_count, ours.reserved) == (0, 0)
    assert resp["pduData"] == ours.stub
    body, code = ndr.decode_response_stub(resp["pduData"], ndr64)
    assert code == 0
    opened = framing.open_response(body, payload[4:20] if request.major != 4 else b"")
    assert opened.verified and opened.response.cmid == request.cmid
