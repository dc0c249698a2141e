"""The host survives malformed input (PROTOCOL.md 1, 2.8). ROB-001, last in this module, proves it still serves."""

from __future__ import annotations

import socket
import struct

import pytest

from conformance.harness.evidence import expect
from conformance.reference.client import RpcError, exchange_on
from conformance.wire import framing, hresult, rpc
from conformance.wire.messages import DecodeError

ACCEPTABLE_SHORT = "HRESULT 0x8007000D, a fault, or a close"
UNKNOWN_PTYPES = [9, 16, 18, 19, 20, 99]  # 16 = auth3, 18 co_cancel, 19 orphaned, 20 shutdown: none is KMS's
FRAG_CASES = ["frag-longer-than-sent", "frag-below-header", "frag-65535", "header-cut"]
negative_inputs_sent = 0  # in this process: ROB-001 sends its own when a run (e.g. --clause, xdist) had none


def raw_exchange(target, data: bytes) -> tuple[str, list]:
    """Send raw bytes on a fresh connection, half-close, and describe what came back (with the transcript)."""
    global negative_inputs_sent
    negative_inputs_sent += 1
    try:
        conn = target.connect()  # recorded: the exchange lands in the evidence and in failure messages
    except OSError as exc:
        return f"no connection at all ({exc})", []
    with conn:
        conn.send(data)
        conn.sock.shutdown(socket.SHUT_WR)  # the rest of a lying frag_length never comes
        chunks = b""
        try:
            while chunk := conn.sock.recv(65536):
                chunks += chunk
        except socket.timeout:
            return "ignored", conn.transcript  # no answer, no close: allowed; still_serves shows if it hung
        except ConnectionResetError:
            pass
        if chunks:
            conn.transcript.append(("host", chunks))
    if not chunks:
        return "closed", conn.transcript
    try:
        pdu = rpc.decode_pdu(chunks[: rpc.peek_frag_length(chunks)])
    except (DecodeError, struct.error):
        return "undecodable answer", conn.transcript
    return (f"fault 0x{pdu.status:08X}" if isinstance(pdu, rpc.Fault) else type(pdu).__name__), conn.transcript


def still_serves(target, after: str, protocol: int | None = None) -> None:
    """A valid activation on a new connection; a dead or hung host fails here with the reason."""
    try:
        result = target.activate(protocol=protocol or max(target.protocols))
    except (OSError, RpcError, DecodeError) as exc:
        expect(False, f"a valid activation after {after}", f"no activation: {type(exc).__name__}: {exc}")
    expect(result.verified, f"a valid activation after {after}", "; ".join(result.problems) or "none",
           result.transcript)


def short_payload(target, length: int) -> tuple[bool, str, list]:
    global negative_inputs_sent
    negative_inputs_sent += 1
    request = target.request(6)
    payload = framing.seal_request(request)[:length]
    try:
        conn = target.connect()
    except OSError as exc:
        return False, f"no connection at all ({exc})", []
    with conn:
        try:
            cont_id, ndr64 = conn.negotiate()
            result = exchange_on(conn, request, cont_id, ndr64, payload)
        except ConnectionError:
            return True, "closed", conn.transcript
        except (RpcError, DecodeError, socket.timeout) as exc:
            return False, f"{type(exc).__name__}: {exc}", conn.transcript
        got = (f"HRESULT 0x{result.hresult:08X}" if result.hresult is not None
               else f"fault 0x{result.fault:08X}" if result.fault is not None else "a KMS response")
        return result.hresult == hresult.E_INVALID_DATA or result.fault is not None, got, conn.transcript


def unknown_ptype_pdu(ptype: int) -> bytes:
    pdu = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    pdu[2] = ptype
    return bytes(pdu)


def lying_frag_pdu(case: str) -> bytes:
    bind = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    if case == "frag-longer-than-sent":
        bind[8:10] = struct.pack("<H", len(bind) + 40)  # 40 bytes promised, never sent
    elif case == "frag-below-header":
        bind[8:10] = struct.pack("<H", 8)  # shorter than the 16-byte header itself
    elif case == "frag-65535":
        bind[8:10] = struct.pack("<H", 65535)  # far beyond max_xmit_frag
    else:
        bind = bind[:10]  # the header itself cut after frag_length
    return bytes(bind)


def refused_or_closed(got: str, ignoring_allowed: bool = False) -> bool:
    return got in ("closed", "BindNak") or got.startswith("fault") or (ignoring_allowed and got == "ignored")


@pytest.mark.clause("KMS-ROB-002")
@pytest.mark.parametrize("length", [0, 4, 100, 251, 259])
def test_short_payload(kms_target, length):
    # 251 and 259: one byte short of a V4 (252) and a V5/V6 (260) payload
    ok, got, transcript = short_payload(kms_target, length)
    expect(ok, f"{ACCEPTABLE_SHORT} for a {length}-byte payload", got, transcript)
    still_serves(kms_target, f"a {length}-byte payload")


@pytest.mark.clause("KMS-ROB-003")
@pytest.mark.parametrize("ptype", UNKNOWN_PTYPES)
def test_unknown_pdu_type(kms_target, ptype):
    # a host that ignores the PDU sees our half-close next and closes (or stays silent: "ignored")
    got, transcript = raw_exchange(kms_target, unknown_ptype_pdu(ptype))
    expect(refused_or_closed(got, ignoring_allowed=True), f"a close, a refusal or silence for PDU type {ptype}", got,
           transcript)
    still_serves(kms_target, f"PDU type {ptype}")


@pytest.mark.clause("KMS-ROB-004")
@pytest.mark.parametrize("case", FRAG_CASES)
def test_lying_frag_length(kms_target, case):
    # a bind_ack here means the host processed a PDU it never received whole; silence after our
    # half-close means it still waits for bytes that cannot come (the clause asks for a close or a fault)
    got, transcript = raw_exchange(kms_target, lying_frag_pdu(case))
    expect(refused_or_closed(got), f"a close or a fault for {case}", got, transcript)
    still_serves(kms_target, case)


@pytest.mark.clause("KMS-ROB-001")
def test_zz_host_still_serves_after_the_negative_checks(kms_target, protocol):
    # defined last (and named test_zz) so that it runs after every negative check above
    if negative_inputs_sent == 0:
        # this process sent none (--clause KMS-ROB-001 alone, or xdist put the others on another worker):
        # send one of each kind here, so the clause is never decided by a host that saw no bad input
        short_payload(kms_target, 100)
        raw_exchange(kms_target, unknown_ptype_pdu(16))
        for case in FRAG_CASES:
            raw_exchange(kms_target, lying_frag_pdu(case))
    still_serves(kms_target, f"{negative_inputs_sent} malformed inputs", protocol)
