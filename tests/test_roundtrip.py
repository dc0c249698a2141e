"""Encode and decode are exact inverses: client-encode -> host-decode -> host-encode -> client-decode."""

import os
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.wire import framing, ndr, rpc
from conformance.wire.messages import KmsRequest, KmsResponse

u32 = st.integers(0, 2**32 - 1)
names = st.text(st.characters(min_codepoint=1, max_codepoint=0xFFFF, blacklist_categories=("Cs",)), max_size=63)
epids = st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), max_size=63)


@st.composite
def requests(draw, major):
    return KmsRequest(app_id=draw(st.uuids()), sku_id=draw(st.uuids()), kms_id=draw(st.uuids()), cmid=draw(st.uuids()),
                      n_policy=draw(u32), request_time=draw(st.integers(0, 2**64 - 1)), workstation=draw(names),
                      major=major, vm=draw(u32), license_status=draw(u32), binding_expiration=draw(u32),
                      previous_cmid=draw(st.uuids()))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 5, 6]).flatmap(lambda m: st.tuples(requests(m), epids, u32, u32, u32)))
def test_full_exchange_round_trip(args):
    request, epid, count, act, renew = args
    payload = framing.seal_request(request, os.urandom(16))
    opened = framing.open_request(payload)
    assert opened.request == request and opened.verified
    response = KmsResponse(epid=epid, cmid=request.cmid, request_time=request.request_time, count=count,
                           activation_interval=act, renewal_interval=renew, major=request.major)
    answer = framing.seal_response(response, opened, hwid=os.urandom(8))
    back = framing.open_response(answer, opened.iv)
    assert back.response == response and back.verified, back.checks


@given(st.binary(max_size=300), st.booleans())
def test_ndr_stubs_round_trip(payload, ndr64):
    assert ndr.decode_request_stub(ndr.encode_request_stub(payload, ndr64), ndr64) == payload
    assert ndr.decode_response_stub(ndr.encode_response_stub(payload, ndr64), ndr64) == (payload, 0)
    assert ndr.decode_response_stub(ndr.encode_error_stub(0xC004F042, ndr64), ndr64) == (None, 0xC004F042)


headers = st.builds(rpc.Header, ptype=st.just(0), flags=st.integers(0, 255), call_id=u32)


@given(st.lists(st.tuples(st.uuids(), st.uuids()), min_size=1, max_size=3), st.integers(0, 65535), u32)
def test_bind_round_trip(contexts, max_xmit, group):
    pdu = rpc.Bind([rpc.ContextElement(i, a, (1, 0), ((t, 2),)) for i, (a, t) in enumerate(contexts)],
                   max_xmit=max_xmit, assoc_group=group)
    assert rpc.decode_pdu(pdu.encode()) == pdu


@given(st.binary(max_size=8), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.uuids()), max_size=3))
def test_bind_ack_round_trip(addr, results):
    pdu = rpc.BindAck([rpc.ContextResult(r, reason, t, 1) for r, reason, t in results], sec_addr=addr,
                      assoc_group=7)
    decoded = rpc.decode_pdu(pdu.encode())
    assert decoded.encode() == pdu.encode() and decoded.results == pdu.results and decoded.sec_addr == addr


@given(st.binary(max_size=300), st.integers(0, 65535), u32)
def test_request_response_fault_round_trip(stub, cont_id, status):
    for pdu in (rpc.Request(stub, cont_id=cont_id, opnum=3), rpc.Response(stub, cont_id=cont_id),
                rpc.Fault(status, cont_id=cont_id), rpc.BindNak(4, [(5, 0), (5, 1)])):
        assert rpc.decode_pdu(pdu.encode()).encode() == pdu.encode()


def test_workstation_bounds():
    base = dict(app_id=uuid.uuid4(), sku_id=uuid.uuid4(), kms_id=uuid.uuid4(), cmid=uuid.uuid4(), n_policy=5,
                request_time=1)
    assert KmsRequest.decode(KmsRequest(workstation="", **base).encode()).workstation == ""
    assert KmsRequest.decode(KmsRequest(workstation="x" * 63, **base).encode()).workstation == "x" * 63
    try:
        KmsRequest(workstation="x" * 64, **base).encode()
    except ValueError as exc:
        assert "longer than 63" in str(exc)
    else:
        raise AssertionError("a 64-character workstation name must be refused")
