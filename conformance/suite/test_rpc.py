"""DCE/RPC binding and PDU rules (PROTOCOL.md 2). Each check ends by proving the host still serves."""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.evidence import Inconclusive, expect, expect_outcome
from conformance.net.outcomes import BindAck
from conformance.net.runner import BindOptions
from conformance.wire import framing, rpc

from .helpers import bind_ack, negotiate, still_serves

FOREIGN_INTERFACE = uuid.UUID("12345778-1234-abcd-ef00-0123456789ac")  # SAMR, not KMS


def results_of(ack: rpc.BindAck) -> list[tuple]:
    return [(r.result, r.reason, str(r.transfer), r.transfer_version) for r in ack.results]


@pytest.mark.clause("KMS-RPC-001")
def test_ndr32_only_bind(kms_target, clause):
    rule = clause.expect
    with kms_target.session() as conn:
        ack = bind_ack(conn.bind(BindOptions(ndr64=False, btfn=False)), conn.transcript)
        got = [(r.result, str(r.transfer), r.transfer_version) for r in ack.results]
        want = [(rule["result"], rule["transfer"], rule["transfer_version"])]
        expect(got == want, want, got, conn.transcript)
    still_serves(kms_target, "an NDR32-only bind")


@pytest.mark.clause("KMS-RPC-002")
def test_three_context_bind(kms_target, clause):
    rule = clause.expect
    with kms_target.session() as conn:
        ack = bind_ack(conn.bind(BindOptions()), conn.transcript)
        results = ack.results
        expect(len(results) == 3, "3 results, one per context", f"{len(results)} results", conn.transcript)
        ndr = results[:2]
        accepted = [r for r in ndr if r.result == rpc.ACCEPTANCE]
        rejected = [r for r in ndr if r.result != rpc.ACCEPTANCE]
        expect(len(accepted) == 1, "exactly one of NDR32/NDR64 accepted", results_of(ack)[:2], conn.transcript)
        expect(all(r.result == rpc.PROVIDER_REJECTION and r.reason == rule["rejection_reason"]
                   and r.transfer.int == 0 and r.transfer_version == 0 for r in rejected),
               f"the other rejected: provider_rejection, reason {rule['rejection_reason']}, null syntax, version 0",
               results_of(ack)[:2], conn.transcript)
        btfn = results[2]
        expect((btfn.result, btfn.reason) == (rule["btfn_result"], rule["btfn_reason"]),
               f"BTFN negotiate_ack ({rule['btfn_result']}) with features {rule['btfn_reason']}",
               [btfn.result, btfn.reason], conn.transcript)
    still_serves(kms_target, "a three-context bind")


@pytest.mark.clause("KMS-RPC-003")
def test_bind_ack_fields(kms_target, clause):
    sizes = [clause.expect["max_xmit"], clause.expect["max_recv"]]  # what the bind offers, echoed
    with kms_target.session() as conn:
        ack = bind_ack(conn.bind(BindOptions(), max_xmit=sizes[0], max_recv=sizes[1]), conn.transcript)
        expect([ack.max_xmit, ack.max_recv] == sizes, f"max_xmit/max_recv echoed: {sizes}",
               [ack.max_xmit, ack.max_recv], conn.transcript)
        expect(ack.assoc_group != 0, "a non-zero assoc_group", ack.assoc_group, conn.transcript)
        # a Windows RPC server writes its own listening endpoint: behind a port-forward that is not ours
        port = ack.sec_addr[:-1]
        expect(ack.sec_addr.endswith(b"\0") and port.isdigit() and 0 < int(port) <= 65535,
               "a secondary address \"<decimal port>\\0\" (the host's own port)", ack.sec_addr, conn.transcript)
    still_serves(kms_target, f"a bind with max_xmit {sizes[0]}")


@pytest.mark.clause("KMS-RPC-004")
@pytest.mark.parametrize("multiplex", [True, False], ids=["mpx", "nomux"])
def test_bind_ack_mirrors_multiplex_flag(kms_target, multiplex):
    options = BindOptions(multiplex=multiplex)
    with kms_target.session() as conn:
        outcome = conn.bind(options)
        if not isinstance(outcome, BindAck):  # whether such a bind must be served is KMS-RPC-012's
            raise Inconclusive(f"the bind {'with' if multiplex else 'without'} PFC_CONC_MPX got {outcome.describe()}, "
                               f"no bind_ack whose flags could mirror it")
        ack = outcome.pdu
        expect(ack.header.flags == options.flags, f"bind_ack flags 0x{options.flags:02x}",
               f"0x{ack.header.flags:02x}", conn.transcript)


@pytest.mark.clause("KMS-RPC-005")
def test_alter_context(kms_target, clause):
    with kms_target.session() as conn:
        conn.bind(BindOptions(ndr32=False))
        outcome = conn.bind(BindOptions(), alter=True, contexts=[rpc.ContextElement(0)])
        expect_outcome(outcome, clause.accept, conn.transcript)
        resp = outcome.pdu
        expect(resp.results and resp.results[0].result == rpc.ACCEPTANCE and resp.results[0].transfer == rpc.NDR32,
               "NDR32 accepted", results_of(resp), conn.transcript)
        expect(resp.sec_addr == b"", "an empty secondary address", resp.sec_addr, conn.transcript)
        expect(resp.header.flags == rpc.FIRST_LAST, "alter_context_resp flags 0x03 (no PFC_CONC_MPX)",
               f"0x{resp.header.flags:02x}", conn.transcript)
    still_serves(kms_target, "an alter_context")


@pytest.mark.clause("KMS-RPC-006")
def test_call_id_echo(kms_target, clause):
    bind_id, request_id = clause.expect["bind_call_id"], clause.expect["request_call_id"]  # sent, then echoed
    with kms_target.session() as conn:
        conn.call_id = bind_id
        ack = bind_ack(conn.bind(BindOptions()), conn.transcript)
        expect(ack.header.call_id == bind_id, f"bind_ack call_id {bind_id:#x}", hex(ack.header.call_id),
               conn.transcript)
        expect(bool(conn.contexts), "a context accepted for the request", results_of(ack), conn.transcript)
        cont_id, ndr64 = next(iter(conn.contexts.items()))
        conn.call_id = request_id
        request = kms_target.request()
        answer = conn.request(framing.seal_request(request), cont_id, ndr64, request=request)
        pdu = getattr(answer, "pdu", None)
        expect(pdu is not None, "an answer PDU with a call_id", answer, conn.transcript)
        expect(pdu.header.call_id == request_id, f"answer call_id {request_id:#x}", hex(pdu.header.call_id),
               conn.transcript)
    still_serves(kms_target, "changing call_ids")


@pytest.mark.clause("KMS-RPC-007")
def test_foreign_interface_rejected(kms_target, clause):
    with kms_target.session() as conn:
        ctx = [rpc.ContextElement(0, FOREIGN_INTERFACE, (1, 0), ((rpc.NDR32, 2),))]
        outcome = conn.bind(BindOptions(), contexts=ctx)
        expect_outcome(outcome, clause.accept, conn.transcript)
        got = [f"{r.result}/{r.reason}" for r in outcome.pdu.results]  # result/reason per context
        want = [f"{clause.expect['result']}/{clause.expect['reason']}"]
        expect(got == want, f"provider_rejection, reason {clause.expect['reason']} ({want[0]})", got, conn.transcript)
    still_serves(kms_target, "a bind for a foreign interface")


def request_answer(target, cont_id: int, ndr64: bool, conn, **call):
    request = target.request()
    return conn.request(framing.seal_request(request), cont_id, ndr64, request=request, **call)


@pytest.mark.clause("KMS-RPC-008")
def test_unknown_opnum_fault(kms_target, clause):
    with kms_target.session() as conn:
        cont_id, ndr64 = negotiate(conn)
        expect_outcome(request_answer(kms_target, cont_id, ndr64, conn, opnum=1), clause.accept, conn.transcript)
    still_serves(kms_target, "a request with opnum 1")


@pytest.mark.clause("KMS-RPC-009")
@pytest.mark.parametrize("bound", [False, True], ids=["no-bind", "wrong-context"])
def test_unaccepted_context_fault(kms_target, bound, clause):
    with kms_target.session() as conn:
        if bound:
            conn.bind(BindOptions(ndr64=False, btfn=False))
        expect_outcome(request_answer(kms_target, 7, False, conn), clause.accept, conn.transcript)
    still_serves(kms_target, "a request on a context never accepted")


@pytest.mark.clause("KMS-RPC-010")
def test_response_pdu_header(kms_target, protocol):
    result = kms_target.activate(protocol=protocol)
    expect_outcome(result.outcome, ["Response", "Refusal"], result.transcript)
    pdu = result.outcome.pdu
    h = pdu.header
    expect(h.flags & rpc.FIRST_LAST == rpc.FIRST_LAST, "FIRST|LAST set", f"flags 0x{h.flags:02x}", result.transcript)
    expect(h.drep == rpc.DREP_LE and h.auth_length == 0 and (h.vers, h.vers_minor) == (5, 0),
           "RPC 5.0, drep 10000000, auth_length 0", [h.vers, h.vers_minor, h.drep.hex(), h.auth_length],
           result.transcript)
    expect(pdu.alloc_hint == len(pdu.stub), f"alloc_hint {len(pdu.stub)} (the stub's length)", pdu.alloc_hint,
           result.transcript)


@pytest.mark.clause("KMS-RPC-011")
def test_several_requests_one_connection(kms_target):
    with kms_target.session() as conn:
        cont_id, ndr64 = negotiate(conn)
        for n in range(3):
            result = conn.request_activation(kms_target.request(), cont_id, ndr64)
            expect(result.outcome.is_kms_answer, f"request {n + 1} of 3 on one connection answered",
                   result.outcome, conn.transcript)


@pytest.mark.clause("KMS-RPC-012")
def test_bind_without_multiplexing(kms_target, protocol):
    result = kms_target.activate(options=BindOptions(multiplex=False), protocol=protocol)
    expect_outcome(result.outcome, ["Response", "Refusal"], result.transcript,
                   detail=f"a V{protocol} request after a bind without PFC_CONC_MPX (ended at the {result.stage})")
