"""DCE/RPC binding and PDU rules (PROTOCOL.md 2). Each check ends by proving the host still serves."""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect
from conformance.reference.client import BindOptions
from conformance.wire import framing, rpc

FOREIGN_INTERFACE = uuid.UUID("12345778-1234-abcd-ef00-0123456789ac")  # SAMR, not KMS


def answer(conn, data: bytes):
    """The host's answer PDU, or the string "connection closed" when it hung up instead."""
    try:
        return conn.exchange(data)
    except ConnectionError:
        return "connection closed"


def describe(pdu) -> str:
    if isinstance(pdu, rpc.Fault):
        return f"fault 0x{pdu.status:08X}"
    return pdu if isinstance(pdu, str) else type(pdu).__name__


def expect_fault(conn, status: int, payload: bytes, cont_id: int, ndr64: bool, opnum: int = 0) -> None:
    """Send a request that must be answered by a fault with `status`; a close counts as the wrong answer."""
    try:
        reply = conn.call(payload, cont_id, ndr64, opnum=opnum)
    except ConnectionError:
        reply = "connection closed"
    expect(isinstance(reply, rpc.Fault) and reply.status == status, f"fault 0x{status:08X}", describe(reply),
           conn.transcript)


def still_serves(target) -> None:
    result = target.alive()
    expect(result.verified, "a valid activation after the check", "; ".join(result.problems) or "no response",
           result.transcript)


@pytest.mark.clause("KMS-RPC-001")
def test_ndr32_only_bind(kms_target):
    rule = clause("KMS-RPC-001").expect
    with kms_target.connect() as conn:
        ack = conn.bind(BindOptions(ndr64=False, btfn=False))
        got = [(r.result, str(r.transfer), r.transfer_version) for r in ack.results]
        want = [(rule["result"], rule["transfer"], rule["transfer_version"])]
        expect(got == want, want, got, conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-002")
def test_three_context_bind(kms_target):
    rule = clause("KMS-RPC-002").expect
    with kms_target.connect() as conn:
        ack = conn.bind(BindOptions())
        results = ack.results
        expect(len(results) == 3, "3 results, one per context", f"{len(results)} results", conn.transcript)
        ndr = results[:2]
        accepted = [r for r in ndr if r.result == rpc.ACCEPTANCE]
        rejected = [r for r in ndr if r.result != rpc.ACCEPTANCE]
        expect(len(accepted) == 1, "exactly one of NDR32/NDR64 accepted", [(r.result, r.reason) for r in ndr],
               conn.transcript)
        expect(all(r.result == rpc.PROVIDER_REJECTION and r.reason == rule["rejection_reason"]
                   and r.transfer.int == 0 and r.transfer_version == 0 for r in rejected),
               "the other rejected: provider_rejection, reason 2, null syntax, version 0",
               [(r.result, r.reason, str(r.transfer), r.transfer_version) for r in rejected], conn.transcript)
        btfn = results[2]
        expect((btfn.result, btfn.reason) == (rule["btfn_result"], rule["btfn_reason"]),
               "BTFN negotiate_ack with features 0x0003", (btfn.result, btfn.reason), conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-003")
def test_bind_ack_fields(kms_target):
    with kms_target.connect() as conn:
        bind = rpc.Bind(BindOptions().contexts(), rpc.Header(rpc.PType.BIND, BindOptions().flags, 2),
                        max_xmit=4280, max_recv=4280)
        ack = conn.exchange(bind.encode())
        expect(isinstance(ack, rpc.BindAck), "bind_ack", type(ack).__name__, conn.transcript)
        expect((ack.max_xmit, ack.max_recv) == (4280, 4280), "max_xmit/max_recv echoed (4280, 4280)",
               (ack.max_xmit, ack.max_recv), conn.transcript)
        expect(ack.assoc_group != 0, "non-zero assoc_group", ack.assoc_group, conn.transcript)
        want = f"{kms_target.port}\0".encode()
        expect(ack.sec_addr == want, want, ack.sec_addr, conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-004")
@pytest.mark.parametrize("multiplex", [True, False], ids=["mpx", "nomux"])
def test_bind_ack_mirrors_multiplex_flag(kms_target, multiplex):
    options = BindOptions(multiplex=multiplex)
    with kms_target.connect() as conn:
        ack = conn.bind(options)
        want = options.flags
        expect(ack.header.flags == want, f"bind_ack flags 0x{want:02x}", f"0x{ack.header.flags:02x}", conn.transcript)


@pytest.mark.clause("KMS-RPC-005")
def test_alter_context(kms_target):
    with kms_target.connect() as conn:
        conn.bind(BindOptions(ndr32=False))
        alter = rpc.Bind([rpc.ContextElement(0)], rpc.Header(rpc.PType.ALTER_CONTEXT, rpc.FIRST_LAST, conn.call_id))
        resp = answer(conn, alter.encode())
        expect(isinstance(resp, rpc.BindAck) and resp.header.ptype == rpc.PType.ALTER_CONTEXT_RESP,
               "alter_context_resp", describe(resp), conn.transcript)
        expect(resp.results and resp.results[0].result == rpc.ACCEPTANCE and resp.results[0].transfer == rpc.NDR32,
               "NDR32 accepted", [(r.result, str(r.transfer)) for r in resp.results], conn.transcript)
        expect(resp.sec_addr == b"", "empty secondary address", resp.sec_addr, conn.transcript)
        expect(resp.header.flags == rpc.FIRST_LAST, "alter_context_resp flags 0x03 (no PFC_CONC_MPX)",
               f"0x{resp.header.flags:02x}", conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-006")
def test_call_id_echo(kms_target):
    with kms_target.connect() as conn:
        conn.call_id = 0x1234
        ack = conn.bind(BindOptions())
        expect(ack.header.call_id == 0x1234, "bind_ack call_id 0x1234", hex(ack.header.call_id), conn.transcript)
        cont_id, ndr64 = next(iter(conn.contexts.items()))
        conn.call_id = 0x5678
        reply = conn.call(framing.seal_request(kms_target.request(6)), cont_id, ndr64)
        expect(reply.header.call_id == 0x5678, "answer call_id 0x5678", hex(reply.header.call_id), conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-007")
def test_foreign_interface_rejected(kms_target):
    rule = clause("KMS-RPC-007").expect
    with kms_target.connect() as conn:
        ctx = [rpc.ContextElement(0, FOREIGN_INTERFACE, (1, 0), ((rpc.NDR32, 2),))]
        ack = conn.bind(BindOptions(), contexts=ctx)
        got = [(r.result, r.reason) for r in ack.results]
        expect(got == [(rule["result"], rule["reason"])], "provider_rejection, reason 1", got, conn.transcript)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-008")
def test_unknown_opnum_fault(kms_target):
    rule = clause("KMS-RPC-008").expect
    with kms_target.connect() as conn:
        cont_id, ndr64 = conn.negotiate()
        expect_fault(conn, rule["status"], framing.seal_request(kms_target.request(6)), cont_id, ndr64, opnum=1)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-009")
@pytest.mark.parametrize("bound", [False, True], ids=["no-bind", "wrong-context"])
def test_unaccepted_context_fault(kms_target, bound):
    rule = clause("KMS-RPC-009").expect
    with kms_target.connect() as conn:
        if bound:
            conn.bind(BindOptions(ndr64=False, btfn=False))
        expect_fault(conn, rule["status"], framing.seal_request(kms_target.request(6)), 7, False)
    still_serves(kms_target)


@pytest.mark.clause("KMS-RPC-010")
def test_response_pdu_header(kms_target, protocol):
    result = kms_target.activate(protocol=protocol)
    pdu = result.response_pdu
    expect(isinstance(pdu, rpc.Response), "response PDU", type(pdu).__name__, result.transcript)
    h = pdu.header
    expect(h.flags & rpc.FIRST_LAST == rpc.FIRST_LAST, "FIRST|LAST set", f"flags 0x{h.flags:02x}", result.transcript)
    expect(h.drep == rpc.DREP_LE and h.auth_length == 0 and (h.vers, h.vers_minor) == (5, 0),
           "RPC 5.0, drep 10000000, auth_length 0", (h.vers, h.vers_minor, h.drep.hex(), h.auth_length),
           result.transcript)
    expect(pdu.alloc_hint == len(pdu.stub), f"alloc_hint {len(pdu.stub)}", pdu.alloc_hint, result.transcript)


@pytest.mark.clause("KMS-RPC-011")
def test_several_requests_one_connection(kms_target):
    from conformance.reference.client import exchange_on

    with kms_target.connect() as conn:
        cont_id, ndr64 = conn.negotiate()
        for n in range(3):
            try:
                result = exchange_on(conn, kms_target.request(6), cont_id, ndr64)
            except ConnectionError as exc:
                expect(False, "3 answered requests on one connection",
                       f"connection closed before request {n + 1}: {exc}", conn.transcript)
            expect(result.verified, f"request {n + 1} verified", result.problems, conn.transcript)


@pytest.mark.clause("KMS-RPC-012")
def test_bind_without_multiplexing(kms_target, protocol):
    try:
        result = kms_target.activate(options=BindOptions(multiplex=False), protocol=protocol)
    except ConnectionError as exc:
        expect(False, "a verified activation after a bind without PFC_CONC_MPX", f"connection closed ({exc})")
    expect(result.verified, "verified activation", result.problems, result.transcript)
