"""Intervals the host dictates and the 4-hour request-time rule (guide 10.3, PROTOCOL.md 9)."""

from __future__ import annotations

import dataclasses

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect
HOUR = 3600 * 10**7  # FILETIME ticks


def activated(target, **changes):
    request = dataclasses.replace(target.request(max(target.protocols)), **changes)
    return request, target.activate(request)


def shifted(target, hours: int):
    """An activation whose request time is `hours` off the host's clock (the control channel may have moved it)."""
    now = target.request(max(target.protocols)).request_time  # real time plus the host's clock offset
    return activated(target, request_time=now + hours * HOUR)


def outcome(result) -> str:
    if result.hresult is not None:
        return f"HRESULT 0x{result.hresult:08X}"
    if result.fault is not None:
        return f"fault 0x{result.fault:08X}"
    return "an activation" if result.response is not None else "; ".join(result.problems) or "no answer"


def expect_interval(target, name: str) -> None:
    """The interval `name` the host dictates equals the one it is configured with (default or --name)."""
    _, result = activated(target)
    expect(result.response is not None, "a response", result.problems, result.transcript)
    got, want = getattr(result.response.response, name), getattr(target, name)
    option = "--" + name.replace("_", "-")
    expect(got == want, f"{name.replace('_', ' ')} {want} min", f"{got} min", result.transcript,
           detail=f"pass {option} if the host is configured otherwise")


@pytest.mark.clause("KMS-TIME-001")
def test_activation_interval(kms_target):
    expect_interval(kms_target, "activation_interval")


@pytest.mark.clause("KMS-TIME-002")
def test_renewal_interval(kms_target):
    expect_interval(kms_target, "renewal_interval")


@pytest.mark.clause("KMS-TIME-003")
@pytest.mark.parametrize("sign", [-1, 1], ids=["past", "future"])
def test_request_time_far_off_refused(kms_target, sign):
    rule = clause("KMS-TIME-003").expect
    _, result = shifted(kms_target, sign * rule["offset_hours"])
    expect(result.hresult == rule["hresult"], f"refusal 0x{rule['hresult']:08X} for a time "
           f"{rule['offset_hours']} h off", outcome(result), result.transcript)


@pytest.mark.clause("KMS-TIME-004")
@pytest.mark.parametrize("sign", [-1, 1], ids=["past", "future"])
def test_request_time_within_tolerance_accepted(kms_target, sign):
    rule = clause("KMS-TIME-004").expect
    _, result = shifted(kms_target, sign * rule["offset_hours"])
    expect(result.verified, f"an activation for a time {rule['offset_hours']} h off", result.problems,
           result.transcript)
