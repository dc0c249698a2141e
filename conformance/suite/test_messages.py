"""KMS message rules (PROTOCOL.md 3-8): versions, integrity, echoes, ePID, HwId, sizes."""

from __future__ import annotations

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect
from conformance.reference.client import exchange_on
from conformance.wire import epid, framing, rpc


def still_serves(target, after: str) -> None:
    result = target.alive()
    expect(result.verified, f"a valid activation after {after}", "; ".join(result.problems) or "no response",
           result.transcript)


def activated(target, protocol: int):
    result = target.activate(protocol=protocol)
    expect(result.response is not None, f"a V{protocol} response", result.problems or "no response",
           result.transcript)
    return result


@pytest.mark.clause("KMS-MSG-001")
def test_each_version_answered_in_kind(kms_target, protocol):
    result = activated(kms_target, protocol)
    got = result.response.response.version
    expect(got == (protocol, 0), f"response version {protocol}.0", f"{got[0]}.{got[1]}", result.transcript)
    expect(result.response.major == protocol, f"clear version {protocol}.0", result.response.major, result.transcript)


@pytest.mark.clause("KMS-MSG-002")
def test_response_integrity(kms_target, protocol):
    result = activated(kms_target, protocol)
    failed = result.response.failed_checks()
    expect(not failed, f"every V{protocol} integrity check verifies ({', '.join(result.response.checks)})",
           f"failed: {', '.join(failed)}", result.transcript)


@pytest.mark.clause("KMS-MSG-003")
def test_cmid_and_time_echo(kms_target, protocol):
    request = kms_target.request(protocol)
    result = kms_target.activate(request)
    expect(result.response is not None, "a response", result.problems, result.transcript)
    r = result.response.response
    expect(r.cmid == request.cmid, f"CMID {request.cmid}", r.cmid, result.transcript)
    expect(r.request_time == request.request_time, f"request time {request.request_time}", r.request_time,
           result.transcript)


@pytest.mark.clause("KMS-MSG-004")
def test_epid_well_formed(kms_target, protocol):
    request = kms_target.request(protocol)
    result = kms_target.activate(request)
    expect(result.response is not None, "a response", result.problems, result.transcript)
    text = result.response.response.epid
    problems = epid.validate(text, kms_target.catalog, kms_id=request.kms_id)
    expect(not problems, "a well-formed, consistent ePID", f"{text}: {'; '.join(problems)}", result.transcript)


@pytest.mark.clause("KMS-MSG-005")
def test_epid_stable(kms_target, protocol):
    first, second = activated(kms_target, protocol), activated(kms_target, protocol)
    a, b = first.response.response.epid, second.response.response.epid
    expect(a == b, f"the same ePID twice ({a})", b, first.transcript + second.transcript)


@pytest.mark.clause("KMS-MSG-006")
def test_hwid_stable(kms_target):
    if 6 not in kms_target.protocols:
        pytest.skip(reason="the HwId exists only in V6 and --protocol excludes 6")
    first, second = activated(kms_target, 6), activated(kms_target, 6)
    expect(first.response.hwid == second.response.hwid, f"the same HwId twice ({first.response.hwid.hex()})",
           second.response.hwid.hex(), first.transcript + second.transcript)


@pytest.mark.clause("KMS-MSG-007")
@pytest.mark.parametrize("version", clause("KMS-MSG-007").expect["versions"])
def test_unsupported_version(kms_target, version):
    rule = clause("KMS-MSG-007").expect
    major, minor = (int(x) for x in version.split("."))
    request = kms_target.request(6)
    # a sound V6 payload whose clear version field (the first 4 bytes: minor, major) is the unsupported one
    payload = bytearray(framing.seal_request(request))
    payload[0:4] = minor.to_bytes(2, "little") + major.to_bytes(2, "little")
    with kms_target.connect() as conn:
        cont_id, ndr64 = conn.negotiate()
        try:
            result = exchange_on(conn, request, cont_id, ndr64, bytes(payload))
            got = (f"HRESULT 0x{result.hresult:08X}" if result.hresult is not None
                   else f"fault 0x{result.fault:08X}" if result.fault is not None else "a KMS response")
        except ConnectionError:
            got, result = "connection closed", None
        expect(result is not None and result.hresult == rule["hresult"],
               f"failure stub with HRESULT 0x{rule['hresult']:08X} for version {version}", got, conn.transcript)
    still_serves(kms_target, f"version {version}")


@pytest.mark.clause("KMS-MSG-008")
def test_sizes_plausible(kms_target, protocol):
    rule = clause("KMS-MSG-008").expect
    result = activated(kms_target, protocol)
    request_pdu = next(data for side, data in reversed(result.transcript) if side == "client")
    response_pdu = next(data for side, data in reversed(result.transcript) if side == "host")
    lo, hi = rule["request_pdu"]
    expect(lo <= len(request_pdu) <= hi, f"request PDU of {lo}..{hi} bytes", len(request_pdu), result.transcript)
    lo, hi = rule["response_pdu"]
    expect(lo <= len(response_pdu) <= hi, f"response PDU of {lo}..{hi} bytes", len(response_pdu), result.transcript)
    expect(rpc.decode_pdu(response_pdu).header.ptype == rpc.PType.RESPONSE, "a response PDU", "other",
           result.transcript)


@pytest.mark.clause("KMS-MSG-009")
def test_v6_response_iv_is_fresh(kms_target):
    if 6 not in kms_target.protocols:
        pytest.skip(reason="the response IV rule is V6's and --protocol excludes 6")
    result = activated(kms_target, 6)
    request_iv = result.request_payload[4:20]
    expect(result.response.iv != request_iv, "a response IV different from the request IV",
           f"both {request_iv.hex()}", result.transcript)
