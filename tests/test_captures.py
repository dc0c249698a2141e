"""Every third-party capture decodes completely and agrees, field for field, with vlmcs's own decode (.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.pcap.decode import decode_capture
from conformance.wire import framing, rpc
from conformance.wire.messages import datetime_from_filetime

SHARED = Path(__file__).resolve().parents[2] / "shared"
THIRD_PARTY = SHARED / "captures" / "third-party"
pytestmark = pytest.mark.skipif(not THIRD_PARTY.is_dir(),
                                reason=f"{THIRD_PARTY} not present: the shared/ folder belongs beside the checkout")
CAPTURES = sorted(THIRD_PARTY.glob("*.pcap")) if THIRD_PARTY.is_dir() else []


def vlmcs_blocks(text: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(request fields, response fields) per exchange, as vlmcs printed them."""
    pairs = []
    for chunk in text.split("Request Parameters")[1:]:
        request_part, _, response_part = chunk.partition("Response from KMS server")
        fields = lambda part: {k.strip(): v.strip() for k, v in re.findall(r"^([^:\n]+?)\s*: (.*)$", part, re.M)}
        pairs.append((fields(request_part), fields(response_part)))
    return pairs


def guid(text: str) -> str:
    return text.split()[0]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_matches_vlmcs_decode(path):
    expected = vlmcs_blocks(path.with_suffix(".txt").read_text())
    exchanges = [e for conn in decode_capture(path) for e in conn.kms]
    assert len(exchanges) == len(expected)
    for ex, (want_req, want_resp) in zip(exchanges, expected):
        assert not ex.errors, ex.errors
        r = ex.request.request
        assert f"{r.major}.{r.minor}" == want_req["Protocol version"]
        assert ("Yes" if r.vm else "No") == want_req["Client is a virtual machine"]
        assert str(r.license_status) == want_req["Licensing status"].split()[0]
        assert f"{r.binding_expiration} minutes" == want_req["Remaining time (0 = forever)"]
        assert str(r.app_id) == guid(want_req["Application ID"])
        assert str(r.sku_id) == guid(want_req["SKU ID (aka Activation ID)"])
        assert str(r.kms_id) == guid(want_req["KMS ID (aka KMS counted ID)"])
        assert str(r.cmid) == want_req["Client machine ID"]
        assert str(r.previous_cmid) == want_req["Previous client machine ID"]
        assert datetime_from_filetime(r.request_time).strftime("%Y-%m-%d %H:%M:%S") == \
            want_req["Client request timestamp (UTC)"]
        assert r.workstation == want_req["Workstation name"]
        assert str(r.n_policy) == want_req["N count policy (minimum clients)"]
        assert all(ex.request.checks.values()), ex.request.checks

        resp = ex.response
        assert resp is not None and resp.verified, resp and resp.checks
        body_size = int(want_resp["Size of KMS Response"].split()[0])
        assert len(rpc_payload(ex)) == body_size
        assert f"{resp.response.major}.{resp.response.minor}" == want_resp["Protocol version"]
        assert resp.response.epid == want_resp["KMS host extended PID"]
        if "KMS host Hardware ID" in want_resp:
            assert resp.hwid.hex().upper() == want_resp["KMS host Hardware ID"]
        assert str(resp.response.cmid) == want_resp["Client machine ID"]
        assert datetime_from_filetime(resp.response.request_time).strftime("%Y-%m-%d %H:%M:%S") == \
            want_resp["Client request timestamp (UTC)"]
        assert str(resp.response.count) == want_resp["KMS host current active clients"]
        assert str(resp.response.renewal_interval) == want_resp["Renewal interval policy"]
        assert str(resp.response.activation_interval) == want_resp["Activation interval policy"]


def rpc_payload(ex) -> bytes:
    from conformance.wire import ndr

    body, _ = ndr.decode_response_stub(ex.host.stub, ex.ndr64)
    return body


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_every_pdu_round_trips(path):
    for conn in decode_capture(path):
        for ex in conn.exchanges:
            for raw in (ex.client_pdu, ex.host_pdu):
                if raw is not None:
                    assert rpc.decode_pdu(raw).encode() == raw


def protocol_hex_blocks() -> list[bytes]:
    doc = (SHARED / "PROTOCOL.md").read_text()
    return [bytes.fromhex(b.replace("\n", "")) for b in re.findall(r"```\n([0-9a-f\n]+)```", doc)]


def test_protocol_md_payloads_reencode_byte_for_byte():
    from conformance.wire import crypto

    v4_req, v4_resp, v5_req, v5_resp, v6_req, v6_resp, v6_plain = protocol_hex_blocks()[:7]
    opened4 = framing.open_request(v4_req)
    assert framing.seal_request(opened4.request) == v4_req
    assert framing.seal_response(framing.open_response(v4_resp).response, opened4) == v4_resp

    opened5 = framing.open_request(v5_req)
    assert framing.seal_request(opened5.request, opened5.iv) == v5_req
    answer5 = framing.open_response(v5_resp, opened5.iv)
    random5 = crypto.xor(answer5.random_xored_ivs, opened5.decrypted_iv)
    assert random5.hex() == "11fceb91d94ffccc1fa0c55bfe8e0dfd"
    assert framing.seal_response(answer5.response, opened5, random=random5) == v5_resp

    opened6 = framing.open_request(v6_req)
    answer6 = framing.open_response(v6_resp, opened6.iv)
    assert crypto.V6_AES.cbc_decrypt(v6_resp[4:20], v6_resp[20:]) == v6_plain
    block = crypto.V6_AES.decrypt_block(answer6.iv)
    assert block.hex() == "ecbcc46f95ce9fe1a2dad4ad9dcfe569"
    random6 = crypto.xor(answer6.random_xored_ivs, opened6.decrypted_iv)
    assert framing.seal_response(answer6.response, opened6, hwid=answer6.hwid, random=random6,
                                 response_block=block) == v6_resp


def test_third_party_capture_timestamps_are_in_utc():
    when = datetime_from_filetime(134400606700000000)
    assert when.isoformat() == "2026-11-25T06:11:10+00:00"
