"""The host survives malformed input (PROTOCOL.md 2.8). ROB-001, last in this module, proves it still serves."""

from __future__ import annotations

import socket
import struct

import pytest

from conformance.harness.evidence import expect
from conformance.reference.client import exchange_on
from conformance.wire import framing, hresult, rpc
from conformance.wire.messages import DecodeError

ACCEPTABLE_SHORT = "HRESULT 0x8007000D, a fault, or a close"


def raw_exchange(target, data: bytes, shutdown: bool = True) -> str:
    """Send raw bytes on a fresh connection; describe what came back."""
    with socket.create_connection((target.host, target.port), timeout=target.timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        chunks = b""
        try:
            while chunk := sock.recv(65536):
                chunks += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    if not chunks:
        return "closed"
    try:
        pdu = rpc.decode_pdu(chunks[: rpc.peek_frag_length(chunks)])
    except (DecodeError, struct.error):
        return "undecodable answer"
    return f"fault 0x{pdu.status:08X}" if isinstance(pdu, rpc.Fault) else type(pdu).__name__


def still_serves(target, after: str) -> None:
    result = target.alive()
    expect(result.verified, f"a valid activation after {after}", "; ".join(result.problems) or "none",
           result.transcript)


@pytest.mark.clause("KMS-ROB-002")
@pytest.mark.parametrize("length", [0, 4, 100, 251, 259])
def test_short_payload(kms_target, length):
    payload = framing.seal_request(kms_target.request(6))[:length]
    with kms_target.connect() as conn:
        cont_id, ndr64 = conn.negotiate()
        try:
            result = exchange_on(conn, kms_target.request(6), cont_id, ndr64, payload)
            got = (f"HRESULT 0x{result.hresult:08X}" if result.hresult is not None
                   else f"fault 0x{result.fault:08X}" if result.fault is not None else "a KMS response")
            ok = result.hresult == hresult.E_INVALID_DATA or result.fault is not None
        except ConnectionError:
            got, ok = "closed", True
        expect(ok, f"{ACCEPTABLE_SHORT} for a {length}-byte payload", got, conn.transcript)
    still_serves(kms_target, f"a {length}-byte payload")


@pytest.mark.clause("KMS-ROB-003")
@pytest.mark.parametrize("ptype", [9, 16, 18, 19, 20, 99])
def test_unknown_pdu_type(kms_target, ptype):
    pdu = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    pdu[2] = ptype
    got = raw_exchange(kms_target, bytes(pdu))
    expect(got in ("closed", "BindNak") or got.startswith("fault"), "a close (or a refusal)", got)
    still_serves(kms_target, f"PDU type {ptype}")


@pytest.mark.clause("KMS-ROB-004")
@pytest.mark.parametrize("case", ["frag-longer-than-sent", "frag-below-header", "frag-65535", "header-cut"])
def test_lying_frag_length(kms_target, case):
    bind = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    if case == "frag-longer-than-sent":
        bind[8:10] = struct.pack("<H", len(bind) + 40)
    elif case == "frag-below-header":
        bind[8:10] = struct.pack("<H", 8)
    elif case == "frag-65535":
        bind[8:10] = struct.pack("<H", 65535)
    else:
        bind = bind[:10]
    got = raw_exchange(kms_target, bytes(bind))
    expect(got in ("closed", "BindNak") or got.startswith("fault"), "a close or a fault", got)
    still_serves(kms_target, case)


@pytest.mark.clause("KMS-ROB-001")
def test_zz_host_still_serves_after_the_negative_checks(kms_target, protocol):
    # named test_zz so that it runs last in this module, after every negative check above
    still_serves(kms_target, "the negative checks")
