"""Encode and decode are exact inverses over the whole field ranges:
client-encode -> host-decode -> host-encode -> client-decode, NDR stubs, and every RPC PDU class."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.wire import crypto, framing, ndr, rpc
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest, KmsResponse

PROPS = settings(max_examples=60, deadline=None)
u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
filetimes = st.integers(0, 2**64 - 1)
# any BMP character except NUL and the surrogate halves (which UTF-16 cannot carry alone)
bmp = st.characters(min_codepoint=1, max_codepoint=0xFFFF, blacklist_categories=("Cs",))
workstations = st.text(bmp, min_size=0, max_size=63)
epids = st.text(bmp, min_size=0, max_size=63)
majors = st.sampled_from([4, 5, 6])


@st.composite
def kms_requests(draw, major=None):
    return KmsRequest(
        app_id=draw(st.uuids()), sku_id=draw(st.uuids()), kms_id=draw(st.uuids()), cmid=draw(st.uuids()),
        n_policy=draw(u32), request_time=draw(filetimes), workstation=draw(workstations),
        major=draw(majors) if major is None else major, vm=draw(u32), license_status=draw(u32),
        binding_expiration=draw(u32), previous_cmid=draw(st.uuids()),
    )


@st.composite
def exchanges(draw):
    request = draw(kms_requests())
    echo = draw(st.booleans())
    response = KmsResponse(
        epid=draw(epids),
        cmid=request.cmid if echo else draw(st.uuids()),
        request_time=request.request_time if echo else draw(filetimes),
        count=draw(u32), activation_interval=draw(u32), renewal_interval=draw(u32), major=request.major,
    )
    return request, response, draw(st.binary(min_size=16, max_size=16)), draw(st.binary(min_size=8, max_size=8))


def exchange(request: KmsRequest, response: KmsResponse, iv: bytes, hwid: bytes):
    """client seals -> host opens -> host seals -> client opens."""
    payload = framing.seal_request(request, iv)
    assert len(payload) == (252 if request.major == 4 else 260)
    opened = framing.open_request(payload)
    answer = framing.seal_response(response, opened, hwid=hwid if request.major == 6 else b"")
    back = framing.open_response(answer, opened.iv)
    return payload, opened, answer, back


@PROPS
@given(exchanges())
def test_kms_exchange_round_trip(case):
    request, response, iv, hwid = case
    payload, opened, answer, back = exchange(request, response, iv, hwid)
    # host side got the client's fields
    assert opened.request == request
    assert (opened.major, opened.minor) == (request.major, 0)
    assert opened.verified, opened.checks
    if request.major == 4:
        assert opened.iv == b""
    else:
        assert opened.iv == iv and payload[4:20] == iv
    # client side got the host's fields
    assert back.response == response
    assert back.verified, back.checks
    assert (back.major, back.minor) == (request.major, 0)
    assert len(answer) == {4: 60 + 2 * (len(response.epid) + 1),
                           5: 20 + (92 + 2 * (len(response.epid) + 1)) // 16 * 16 + 16,
                           6: 20 + (132 + 2 * (len(response.epid) + 1)) // 16 * 16 + 16}[request.major]
    if request.major == 6:
        assert back.hwid == hwid and back.xored_ivs == opened.decrypted_iv
    if request.major == 5:
        assert back.iv == iv


@PROPS
@given(kms_requests(), st.integers(1, 2**16 - 1))
def test_request_with_nonzero_minor_round_trips_when_allowed(request, minor):
    request = KmsRequest(**{**request.__dict__, "minor": minor})
    payload = framing.seal_request(request, os.urandom(16))
    with pytest.raises(framing.UnsupportedVersion):
        framing.open_request(payload)
    opened = framing.open_request(payload, allow_minor=True)
    assert opened.request == request and opened.minor == minor


@PROPS
@given(kms_requests(), st.binary(min_size=1, max_size=126))
def test_request_base_bytes_survive_garbage_after_the_workstation_nul(request, garbage):
    base = bytearray(request.encode())
    name_end = 108 + 2 * len(request.workstation) + 2
    tail = garbage[: 236 - name_end]
    base[name_end:name_end + len(tail)] = tail
    decoded = KmsRequest.decode(bytes(base))
    assert decoded.workstation == request.workstation
    assert decoded.encode() == bytes(base)
    # the MAC and the ciphertext cover the raw buffer, so re-sealing gives the same payload
    sealed = framing.seal_request(decoded, bytes(16))
    if request.major == 4:
        assert sealed == bytes(base) + crypto.v4_mac(bytes(base))
    else:
        cipher = crypto.V5_AES if request.major == 5 else crypto.V6_AES
        assert cipher.cbc_decrypt(bytes(16), sealed[20:]) == bytes(base) + b"\x04" * 4


@PROPS
@given(exchanges(), st.booleans())
def test_full_stack_round_trip_through_ndr_and_rpc(case, ndr64):
    """The same exchange carried in Request/Response PDUs with NDR32 or NDR64 stubs."""
    request, response, iv, hwid = case
    cont_id = 1 if ndr64 else 0
    request_pdu = rpc.Request(ndr.encode_request_stub(framing.seal_request(request, iv), ndr64),
                              rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 7), cont_id, 0).encode()
    host_view = rpc.decode_pdu(request_pdu)
    assert isinstance(host_view, rpc.Request) and host_view.cont_id == cont_id and host_view.opnum == 0
    opened = framing.open_request(ndr.decode_request_stub(host_view.stub, ndr64))
    assert opened.request == request
    answer = framing.seal_response(response, opened, hwid=hwid if request.major == 6 else b"")
    response_pdu = rpc.Response(ndr.encode_response_stub(answer, ndr64),
                                rpc.Header(rpc.PType.RESPONSE, rpc.FIRST_LAST, 7), cont_id).encode()
    client_view = rpc.decode_pdu(response_pdu)
    assert isinstance(client_view, rpc.Response) and client_view.header.call_id == 7
    assert client_view.alloc_hint == len(client_view.stub)
    body, code = ndr.decode_response_stub(client_view.stub, ndr64)
    assert code == 0 and body == answer
    assert framing.open_response(body, opened.iv).response == response


# --- NDR stubs ---

@PROPS
@given(st.binary(max_size=400), st.booleans())
def test_ndr_request_stub_round_trip(payload, ndr64):
    stub = ndr.encode_request_stub(payload, ndr64)
    assert len(stub) == (16 if ndr64 else 8) + len(payload)
    assert ndr.decode_request_stub(stub, ndr64) == payload


@PROPS
@given(st.binary(max_size=400), st.booleans(), u32)
def test_ndr_response_stub_round_trip(payload, ndr64, code):
    stub = ndr.encode_response_stub(payload, ndr64, code)
    assert len(stub) % 4 == 0
    assert len(stub) == (24 if ndr64 else 12) + len(payload) + (-len(payload) % 4) + 4
    assert ndr.decode_response_stub(stub, ndr64) == (payload, code)


@PROPS
@given(u32, st.booleans())
def test_ndr_error_stub_round_trip(code, ndr64):
    stub = ndr.encode_error_stub(code, ndr64)
    assert len(stub) == (20 if ndr64 else 12)
    assert ndr.decode_response_stub(stub, ndr64) == (None, code)


def test_ndr_stub_sizes_of_the_protocol():
    assert len(ndr.encode_request_stub(bytes(252))) == 260
    assert len(ndr.encode_request_stub(bytes(260))) == 268
    assert len(ndr.encode_request_stub(bytes(260), True)) == 276
    assert len(ndr.encode_response_stub(bytes(160))) == 176
    assert len(ndr.encode_response_stub(bytes(228))) == 244
    assert len(ndr.encode_response_stub(bytes(260))) == 276
    assert len(ndr.encode_response_stub(bytes(260), True)) == 288
    assert len(ndr.encode_response_stub(bytes(158))) == 176  # 2 pad bytes for an even-length ePID


# --- RPC PDUs ---

def headers(ptype, flags=st.integers(0, 255)):
    return st.builds(rpc.Header, ptype=st.just(int(ptype)), flags=flags, call_id=u32)


syntaxes = st.tuples(st.one_of(st.sampled_from([rpc.NDR32, rpc.NDR64, rpc.btfn_uuid()]), st.uuids()), u32)
contexts = st.builds(rpc.ContextElement, cont_id=u16, abstract=st.one_of(st.just(rpc.KMS_INTERFACE), st.uuids()),
                     abstract_version=st.tuples(u16, u16),
                     transfers=st.lists(syntaxes, min_size=1, max_size=3).map(tuple))


@PROPS
@given(st.sampled_from([rpc.PType.BIND, rpc.PType.ALTER_CONTEXT]).flatmap(headers),
       st.lists(contexts, min_size=1, max_size=3), u16, u16, u32)
def test_bind_round_trip(header, ctxs, max_xmit, max_recv, group):
    pdu = rpc.Bind(ctxs, header, max_xmit, max_recv, group)
    raw = pdu.encode()
    assert len(raw) == 28 + sum(24 + 20 * len(c.transfers) for c in ctxs)
    assert rpc.peek_frag_length(raw) == len(raw)
    assert rpc.decode_pdu(raw) == pdu


def test_bind_sizes_of_the_protocol():
    three = rpc.Bind([rpc.ContextElement(0), rpc.ContextElement(1, transfers=((rpc.NDR64, 1),)),
                      rpc.ContextElement(2, transfers=((rpc.btfn_uuid(), 1),))])
    assert len(three.encode()) == 160 and len(rpc.Bind([rpc.ContextElement(0)]).encode()) == 72


results = st.builds(rpc.ContextResult, result=u16, reason=u16,
                    transfer=st.one_of(st.just(uuid.UUID(int=0)), st.just(rpc.NDR64), st.uuids()),
                    transfer_version=u32)


@PROPS
@given(st.sampled_from([rpc.PType.BIND_ACK, rpc.PType.ALTER_CONTEXT_RESP]).flatmap(headers),
       st.binary(max_size=24), st.lists(results, min_size=0, max_size=3), u16, u16, u32)
def test_bind_ack_round_trip(header, sec_addr, res, max_xmit, max_recv, group):
    pdu = rpc.BindAck(res, header, max_xmit, max_recv, group, sec_addr)
    raw = pdu.encode()
    assert (26 + len(sec_addr) + (-(26 + len(sec_addr)) % 4)) + 4 + 24 * len(res) == len(raw)
    decoded = rpc.decode_pdu(raw)
    assert isinstance(decoded, rpc.BindAck)
    assert decoded.encode() == raw
    assert decoded.sec_addr == sec_addr and decoded.results == res and decoded.header == header
    assert (decoded.max_xmit, decoded.max_recv, decoded.assoc_group) == (max_xmit, max_recv, group)
    assert decoded.pad == bytes(-(26 + len(sec_addr)) % 4)


def test_bind_ack_keeps_stale_pad_bytes():
    """vlmcsd leaves stale bytes in the pad of alter_context_resp; decode keeps them, encode restores them."""
    pdu = rpc.BindAck([rpc.ContextResult(0, 0, rpc.NDR32, 2)], rpc.Header(rpc.PType.ALTER_CONTEXT_RESP),
                      sec_addr=b"", pad=b"16")
    raw = pdu.encode()
    assert raw[26:28] == b"16" and rpc.decode_pdu(raw).encode() == raw


@PROPS
@given(headers(rpc.PType.REQUEST), st.binary(max_size=300), u16, u16, st.one_of(st.none(), u32))
def test_request_round_trip(header, stub, cont_id, opnum, hint):
    pdu = rpc.Request(stub, header, cont_id, opnum, hint)
    raw = pdu.encode()
    decoded = rpc.decode_pdu(raw)
    assert decoded.encode() == raw
    assert (decoded.stub, decoded.cont_id, decoded.opnum, decoded.header) == (stub, cont_id, opnum, header)
    assert decoded.alloc_hint == (len(stub) if hint is None else hint)


@PROPS
@given(headers(rpc.PType.RESPONSE), st.binary(max_size=300), u16, u8, u8, st.one_of(st.none(), u32))
def test_response_round_trip(header, stub, cont_id, cancel, reserved, hint):
    pdu = rpc.Response(stub, header, cont_id, cancel, reserved, hint)
    raw = pdu.encode()
    decoded = rpc.decode_pdu(raw)
    assert decoded.encode() == raw
    assert (decoded.stub, decoded.cont_id, decoded.cancel_count, decoded.reserved) == (stub, cont_id, cancel, reserved)
    assert decoded.alloc_hint == (len(stub) if hint is None else hint)


@PROPS
@given(headers(rpc.PType.FAULT), u32, u16, u8, u8, u32, u32, st.binary(max_size=16))
def test_fault_round_trip(header, status, cont_id, cancel, reserved, hint, reserved2, trailer):
    pdu = rpc.Fault(status, header, cont_id, cancel, reserved, hint, reserved2, trailer)
    raw = pdu.encode()
    assert len(raw) == 32 + len(trailer)
    assert rpc.decode_pdu(raw) == pdu


@PROPS
@given(headers(rpc.PType.BIND_NAK), u16, st.lists(st.tuples(u8, u8), max_size=4))
def test_bind_nak_round_trip(header, reason, versions):
    pdu = rpc.BindNak(reason, versions, header)
    raw = pdu.encode()
    decoded = rpc.decode_pdu(raw)
    assert decoded.encode() == raw
    assert decoded.reason == reason and [tuple(v) for v in decoded.versions] == versions


@PROPS
@given(st.lists(st.one_of(
    st.builds(rpc.Request, st.binary(max_size=40)),
    st.builds(rpc.Response, st.binary(max_size=40)),
    st.builds(rpc.Fault, u32),
    st.builds(rpc.BindNak, u16),
), min_size=1, max_size=5), st.integers(0, 15))
def test_split_stream_cuts_at_frag_length(pdus, cut):
    stream = b"".join(p.encode() for p in pdus)
    whole, rest = rpc.split_stream(stream)
    assert whole == [p.encode() for p in pdus] and rest == b""
    partial, rest = rpc.split_stream(stream[: len(stream) - cut])
    assert b"".join(partial) + rest == stream[: len(stream) - cut]


def test_workstation_bounds():
    base = dict(app_id=uuid.uuid4(), sku_id=uuid.uuid4(), kms_id=uuid.uuid4(), cmid=uuid.uuid4(), n_policy=5,
                request_time=1)
    assert KmsRequest.decode(KmsRequest(workstation="", **base).encode()).workstation == ""
    assert KmsRequest.decode(KmsRequest(workstation="\u00e9" * 63, **base).encode()).workstation == "\u00e9" * 63
    with pytest.raises(ValueError, match="longer than 63"):
        KmsRequest(workstation="x" * 64, **base).encode()


def test_epid_of_63_characters_fills_pid_size_128():
    response = KmsResponse(epid="\u4e2d" * 63, cmid=uuid.uuid4(), request_time=1, count=1)
    raw = response.encode()
    assert int.from_bytes(raw[4:8], "little") == 128
    assert KmsResponse.decode(raw) == (response, len(raw))
    with pytest.raises(DecodeError):
        KmsResponse.decode(KmsResponse(epid="x" * 64, cmid=uuid.uuid4(), request_time=1, count=1).encode())
