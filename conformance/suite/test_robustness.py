"""The host survives malformed input (PROTOCOL.md 1, 2.8). ROB-001, last in the run, proves it still serves.

Each check judges two things apart: the shape of the answer to the bad input (the clause's
`accept` outcomes) and that a new connection still gets a KMS answer afterwards.
"""

from __future__ import annotations

import signal
import struct
import uuid

import pytest

from conformance.harness.evidence import ClauseFailure, expect, expect_outcome
from conformance.harness.host_life import DEATHS_KEY, DOWN_KEY
from conformance.harness.profile import NotServed
from conformance.wire import framing, rpc

from .helpers import count_for, counting_edition, negotiate, still_serves, windows_edition

UNKNOWN_PTYPES = [9, 16, 18, 19, 20, 99]  # 16 = auth3, 18 co_cancel, 19 orphaned, 20 shutdown: none is KMS's
FRAG_CASES = ["frag-longer-than-sent", "frag-below-header", "frag-65535", "header-cut"]


SHORT_CUTS = ["empty", "4", "100", "v4-length", "one-short"]


def short_payload(target, run, cut: str):
    """A request payload (of the newest version the host serves) cut short, on a bound context."""
    run.negative_inputs += 1
    request = target.request()
    payload = framing.seal_request(request)
    # a V4 payload's length (252) is one a V5/V6 payload cannot have; one byte short of its own length
    length = {"empty": 0, "v4-length": min(252, len(payload) - 1), "one-short": len(payload) - 1}.get(cut)
    payload = payload[: int(cut) if length is None else length]
    with target.session() as conn:
        cont_id, ndr64 = negotiate(conn)
        return conn.request(payload, cont_id, ndr64, request=request), conn.transcript


def raw(target, run, data: bytes):
    """Raw bytes on a fresh connection, then EOF: (outcome, transcript)."""
    run.negative_inputs += 1
    return target.send_raw(data)


def unknown_ptype_pdu(ptype: int) -> bytes:
    pdu = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    rpc.set_ptype(pdu, ptype)
    return bytes(pdu)


def lying_frag_pdu(case: str) -> bytes:
    bind = bytearray(rpc.Bind([rpc.ContextElement(0)]).encode())
    if case == "frag-longer-than-sent":
        rpc.set_frag_length(bind, len(bind) + 40)  # 40 bytes promised, never sent
    elif case == "frag-below-header":
        rpc.set_frag_length(bind, 8)  # shorter than the 16-byte header itself
    elif case == "frag-65535":
        rpc.set_frag_length(bind, 65535)  # far beyond max_xmit_frag
    else:
        offset, code = rpc.HEADER_FIELDS["frag_length"]
        bind = bind[:offset + struct.calcsize(code)]  # the header itself cut after frag_length
    return bytes(bind)


@pytest.mark.clause("KMS-ROB-002")
@pytest.mark.parametrize("cut", SHORT_CUTS)
def test_short_payload(kms_target, kms_run, cut, clause):
    outcome, transcript = short_payload(kms_target, kms_run, cut)
    expect_outcome(outcome, clause.accept, transcript, detail=f"for a payload cut short ({cut})")
    still_serves(kms_target, f"a payload cut short ({cut})")


@pytest.mark.clause("KMS-ROB-003")
@pytest.mark.parametrize("ptype", UNKNOWN_PTYPES)
def test_unknown_pdu_type(kms_target, kms_run, ptype, clause):
    # a host that ignores the PDU sees our half-close next and closes (or stays silent)
    outcome, transcript = raw(kms_target, kms_run, unknown_ptype_pdu(ptype))
    expect_outcome(outcome, clause.accept, transcript, detail=f"for PDU type {ptype}")
    still_serves(kms_target, f"PDU type {ptype}")


@pytest.mark.clause("KMS-ROB-004")
@pytest.mark.parametrize("case", FRAG_CASES)
def test_lying_frag_length(kms_target, kms_run, case, clause):
    # a bind_ack here means the host processed a PDU it never received whole; silence after our
    # half-close means it still waits for bytes that cannot come (the clause asks for a close or a fault)
    outcome, transcript = raw(kms_target, kms_run, lying_frag_pdu(case))
    expect_outcome(outcome, clause.accept, transcript, detail=f"for {case}")
    still_serves(kms_target, case)


@pytest.mark.clause("KMS-ROB-001")
def test_host_still_serves_after_the_negative_checks(kms_target, kms_run, protocol):
    # ordered last in the run (harness.selection.LAST), so it runs after every negative check
    if kms_run.negative_inputs == 0:
        # this process sent none (--clause KMS-ROB-001 alone, or xdist put the others on another worker):
        # send one of each kind here, so the clause is never decided by a host that saw no bad input
        short_payload(kms_target, kms_run, "100")
        raw(kms_target, kms_run, unknown_ptype_pdu(16))
        for case in FRAG_CASES:
            raw(kms_target, kms_run, lying_frag_pdu(case))
    result = kms_target.activate(protocol=protocol)  # an edition the host activated before any bad input
    expect_outcome(result.outcome, ["Response"], result.transcript,
                   detail=f"a V{protocol} activation after {kms_run.negative_inputs} malformed inputs")


@pytest.mark.clause("KMS-ROB-006")
def test_host_stayed_up(kms_target, pytestconfig):
    # ordered after ROB-001; a death during any check is this clause's failure too (harness.host_life), shown
    # here once more so that the run's own tally and failure list carry it, with its pcap and replay
    down = pytestconfig.stash.get(DOWN_KEY, None) or next(iter(pytestconfig.stash.get(DEATHS_KEY, [])), None)
    if down is not None:
        raise ClauseFailure(down["expected"], down["actual"], detail=f"{down['message']}; {down['detail']}")
    result = kms_target.alive()
    expect(result.outcome.is_kms_answer, "the host still answers at the end of the run", result.outcome,
           result.transcript)


@pytest.mark.clause("KMS-ROB-007")
def test_restart_keeps_clients(kms_target, fresh_host, clause):
    """A known client asked twice, then after SIGTERM and after SIGKILL: each restart answers as none happened."""
    if fresh_host.means != "start":
        pytest.skip(reason="restarts only a host the suite started itself: --target-cmd \"COMMAND {port}\" "
                    "({dir} where it keeps its state)")
    edition = counting_edition(kms_target)  # N = 25 where served: the cache grows to 50
    try:
        server = windows_edition(kms_target, 5)  # after the restart: does the cache remember its size?
    except NotServed:
        server = edition
    clients = [uuid.uuid4() for _ in range(clause.expect["clients"])]
    fresh_host.reset()
    for cmid in clients:
        count_for(kms_target, edition, cmid)
    transcripts = []

    def probe() -> int:
        count, result = count_for(kms_target, server, clients[0])
        transcripts.extend(result.transcript)
        return count

    before = [probe(), probe()]  # what asking again does without a restart (nothing, on a sound host)
    step, seen, wrong = before[1] - before[0], {"before": before}, []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        fresh_host.managed.restart(sig)
        want = (seen.get("after SIGTERM") or before[-1]) + step
        seen[f"after {sig.name}"] = got = probe()
        if got != want:
            wrong.append(f"{got} after {sig.name}, not {want}")
    kept = fresh_host.managed.command.has_dir
    expect(not wrong, f"the same count for a known client after each restart as without one ({len(clients)} clients "
           f"of {edition.name}, then {server.name})", seen, transcripts,
           detail="; ".join(wrong) + (": its state directory {dir} was kept across the restarts" if kept else
                                      ": the command has no {dir}, so the host keeps whatever it saves on its own path"))
