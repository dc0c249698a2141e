"""KMS message rules (PROTOCOL.md 3-8): versions, integrity, echoes, ePID, HwId, sizes, simultaneous clients."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from conformance.harness.evidence import ClauseFailure, Inconclusive, expect, expect_outcome
from conformance.harness.phases import InAdvance
from conformance.harness.selection import clause_of
from conformance.net.outcomes import Response
from conformance.wire import epid, framing, rpc
from conformance.wire.layout import IV

from .helpers import negotiate, still_serves

SECOND = 10**7  # FILETIME ticks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "version" in metafunc.fixturenames:  # the unsupported versions are the clause's (KMS-MSG-007's expect)
        metafunc.parametrize("version", clause_of(metafunc.definition).expect["versions"])


TAKES = {"test_epid_stable": 2}  # activations made in advance each check takes (1 unless said here)


@pytest.fixture(scope="module")
def in_advance(kms_target, request) -> InAdvance:
    """The module's plain activations, made together per version where the host answers simultaneous clients:
    a host that answers V4 a second late (py-kms) costs a second for these checks, not seven."""
    def wanted(protocol: int) -> int:
        return sum(TAKES.get(item.originalname, 1) for item in request.session.items
                   if "in_advance" in item.fixturenames and getattr(item, "callspec", None) is not None
                   and item.callspec.params.get("protocol") == protocol)
    return InAdvance(request.config, kms_target, wanted)


def plain(target, protocol: int, in_advance: InAdvance):
    """One plain activation of `protocol`: made in advance, or now."""
    return in_advance.take(protocol) or target.activate(target.request(protocol))


def activated(target, protocol: int | None = None, request=None, in_advance: InAdvance | None = None):
    """An activation that must come back as a KMS response that opens (verified or not)."""
    result = (plain(target, protocol, in_advance) if in_advance is not None and request is None
              else target.activate(request or target.request(protocol)))
    if not isinstance(result.outcome, Response):
        raise ClauseFailure(["Response"], result.outcome, result.transcript, f"ended at the {result.stage}")
    if result.response is None:  # an answer that is no response of the asked version: KMS-MSG-001's to judge
        raise Inconclusive(f"the V{result.request.major} answer does not open ({'; '.join(result.problems)}); "
                           f"see KMS-MSG-001")
    return result


@pytest.mark.clause("KMS-MSG-001")
def test_each_version_answered_in_kind(kms_target, protocol, in_advance):
    served = kms_target.serves
    if not served.served:  # a KMS host answers at least one generation of the catalog
        raise ClauseFailure(["Response"], "; ".join({**served.unserved, **served.broken}.values()),
                            detail="no protocol version was answered with an activation")
    if protocol in served.broken:  # a version is served (a response) or refused as one (0x8007000D): not this
        raise ClauseFailure(["Response", "Refusal(0x8007000D)"], served.broken[protocol],
                            detail=f"a V{protocol} request of each edition the probes tried")
    result = plain(kms_target, protocol, in_advance)
    expect_outcome(result.outcome, ["Response"], result.transcript)
    clear = result.outcome.clear_version
    expect(clear == (protocol, 0), f"a response payload of version {protocol}.0",
           "none" if clear is None else f"{clear[0]}.{clear[1]}", result.transcript)
    inner = result.response.response.version if result.response is not None else None
    expect(inner == (protocol, 0), f"inner response version {protocol}.0",
           "undecodable" if inner is None else f"{inner[0]}.{inner[1]}", result.transcript)


@pytest.mark.clause("KMS-MSG-002")
def test_response_integrity(kms_target, protocol, in_advance):
    result = activated(kms_target, protocol, in_advance=in_advance)
    failed = result.response.failed_checks()
    expect(not failed, f"every V{protocol} integrity check verifies ({', '.join(result.response.checks)})",
           [f"failed: {name}" for name in failed], result.transcript)


@pytest.mark.clause("KMS-MSG-003")
def test_cmid_and_time_echo(kms_target, protocol, in_advance):
    result = activated(kms_target, protocol, in_advance=in_advance)
    request, r = result.request, result.response.response
    expect(r.cmid == request.cmid, f"CMID {request.cmid} echoed", r.cmid, result.transcript)
    expect(r.request_time == request.request_time, f"request time {request.request_time} echoed", r.request_time,
           result.transcript)


@pytest.mark.clause("KMS-MSG-004")
def test_epid_well_formed(kms_target, protocol, in_advance):
    result = activated(kms_target, protocol, in_advance=in_advance)
    text = result.response.response.epid
    problems = epid.validate(text, kms_target.catalog, kms_id=result.request.kms_id)
    expect(not problems, "a well-formed, consistent ePID", problems, result.transcript, detail=f"ePID {text}")


@pytest.mark.clause("KMS-MSG-005")
def test_epid_stable(kms_target, protocol, in_advance):
    first, second = (activated(kms_target, protocol, in_advance=in_advance) for _ in range(2))
    a, b = first.response.response.epid, second.response.response.epid
    expect(a == b, "the same ePID twice", "a different ePID", first.transcript + second.transcript,
           detail=f"{a}, then {b}")


@pytest.mark.clause("KMS-MSG-006")
def test_hwid_stable(kms_target):
    if 6 not in kms_target.protocols:
        pytest.skip(reason="the HwId exists only in V6 and --protocol excludes 6")
    first, second = activated(kms_target, 6), activated(kms_target, 6)
    a, b = first.response.hwid.hex().upper(), second.response.hwid.hex().upper()
    expect(a == b, "the same HwId twice", "a different HwId", first.transcript + second.transcript,
           detail=f"{a}, then {b}")


@pytest.mark.clause("KMS-MSG-007")
def test_unsupported_version(kms_target, version, clause):
    major, minor = (int(x) for x in version.split("."))
    request = kms_target.request()
    # a sound payload whose clear version field (the first 4 bytes: minor, major) is the unsupported one
    payload = bytearray(framing.seal_request(request))
    payload[0:4] = minor.to_bytes(2, "little") + major.to_bytes(2, "little")
    with kms_target.session() as conn:
        cont_id, ndr64 = negotiate(conn)
        outcome = conn.request(bytes(payload), cont_id, ndr64, request=request)
        expect_outcome(outcome, clause.accept, conn.transcript, detail=f"for version {version}")
    still_serves(kms_target, f"a request of version {version}")


@pytest.mark.clause("KMS-MSG-008")
def test_sizes_plausible(kms_target, protocol, in_advance, clause):
    rule = clause.expect
    result = activated(kms_target, protocol, in_advance=in_advance)
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
    request_iv = result.payload[IV]
    expect(result.response.iv != request_iv, "a response IV different from the request IV",
           f"both {request_iv.hex()}", result.transcript)


@pytest.mark.clause("KMS-MSG-010")
def test_simultaneous_clients(kms_target, clause):
    clients = clause.expect["clients"]
    # one client alone first: what concurrency adds is judged against it (a host that breaks a rule for a
    # lone client too fails that rule's own clause)
    alone = kms_target.activate()
    if not isinstance(alone.outcome, Response):
        raise ClauseFailure(["Response"], alone.outcome, alone.transcript, "one client alone")
    base = alone.request
    # one client entry (the audit's CMID), told apart by request time: each answer must echo its own
    requests = [dataclasses.replace(base, request_time=base.request_time - (n + 1) * SECOND) for n in range(clients)]
    results: list = [None] * clients
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        start.wait()
        results[n] = kms_target.activate(requests[n])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(kms_target.timeout * 3)
    wrong, transcript = [], []
    for n, result in enumerate(results):
        if result is None or not isinstance(result.outcome, Response):
            wrong.append(f"client {n + 1}: {'no result' if result is None else result.describe()}")
        elif new := result.outcome.problem_kinds - alone.outcome.problem_kinds:
            wrong.append(f"client {n + 1}: {'; '.join(result.problems)} ({', '.join(sorted(new))}: not so alone)")
        else:
            continue
        transcript += result.transcript if result is not None else []
    expect(not wrong, f"{clients} answers, each to its own request, as right as one client's alone", wrong,
           transcript)
    still_serves(kms_target, f"{clients} simultaneous clients")
