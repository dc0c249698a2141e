"""What a client under test makes of the host's answer (PROTOCOL.md 15, C4 and C5).

pytest --client-cmd "COMMAND {host}:{port}" --client-rejected REGEX (or --client-exit-status, or
--client-activated REGEX): each check runs the client against a host whose answers break one rule, or
carry a count below or at the client's N, and reads what the client said.
"""

from __future__ import annotations

import pytest

from conformance.harness.broken_answers import BREAKS
from conformance.harness.evidence import ClauseFailure, expect


def answered(answers, mode: str):
    """The client's run against answers of `mode`, once it is known to have sent a request and exited."""
    result = answers.run(mode)
    if result.run.hung:
        raise ClauseFailure("the client exits after the host's answer", f"still running after {answers.timeout:g} s "
                            f"(killed)", detail=result.said())
    expect(bool(result.run.requests), "a KMS request", f"none: the client exited with {result.run.returncode}",
           detail=result.said())
    return result


def expect_rejected(answers, mode: str) -> None:
    result = answered(answers, mode)
    if mode not in BREAKS or result.version not in BREAKS[mode][1]:
        pytest.skip(reason=f"the client sent V{result.version} requests; this rule is one of V"
                           f"{', V'.join(map(str, BREAKS[mode][1]))} answers")
    transcript = result.run.transcript()
    said = f"{result.report.describe()}; {result.said()}"
    if result.activated is not None:
        expect(not result.activated, f"no activation reported for an answer where {BREAKS[mode][0]}",
               "activated", transcript, detail=said)
    if result.rejected is not None:
        expect(result.rejected, f"the answer rejected: {BREAKS[mode][0]}", "not rejected", transcript, detail=said)


@pytest.mark.clause("KMS-CLI-010")
@pytest.mark.parametrize("mode", ["cmid", "request-time"])
def test_rejects_a_wrong_echo(answers, mode):
    expect_rejected(answers, mode)


@pytest.mark.clause("KMS-CLI-011")
def test_rejects_a_failed_integrity_check(answers):
    expect_rejected(answers, "integrity")


@pytest.mark.clause("KMS-CLI-012")
def test_rejects_wrong_xored_ivs(answers):
    expect_rejected(answers, "xored-ivs")


@pytest.mark.clause("KMS-CLI-013")
def test_rejects_a_wrong_pid_size(answers):
    expect_rejected(answers, "pid-size")


@pytest.mark.clause("KMS-CLI-014")
@pytest.mark.parametrize("mode", ["below", "at"])
def test_activated_only_at_n(answers, mode):
    result = answered(answers, mode)
    if result.activated is None:
        pytest.skip(reason="the client's report has no activation in it: give --client-exit-status or "
                           "--client-activated REGEX")
    n = result.run.requests[0].reply.decision.opened.request.n_policy
    count = n - 1 if mode == "below" else n
    said = f"{result.report.describe()}; {result.said()}"
    expect(result.activated == (mode == "at"), f"{'activation' if mode == 'at' else 'no activation'} reported "
           f"for a count of {count} (its N is {n})", "activated" if result.activated else "not activated",
           result.run.transcript(), detail=said)
    if mode == "at" and result.rejected is not None:
        expect(not result.rejected, f"a valid answer with a count of {n} not rejected", "rejected",
               result.run.transcript(), detail=said)
