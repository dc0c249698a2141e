"""Intervals the host dictates and the 4-hour request-time rule (guide 10.3, PROTOCOL.md 9).

The 4-hour rule is judged against the host's own clock twice: as it is, and moved a day on (the
control channel, or libfaketime in a host the suite starts), where the suite's requests follow the
host's clock: a host that compares with anything but its own clock shows it there.
"""

from __future__ import annotations

import dataclasses

import pytest

from conformance.harness.evidence import ClauseFailure, Inconclusive, expect, expect_outcome

HOUR = 3600 * 10**7  # FILETIME ticks
MOVED = 86400  # seconds the host's clock is moved on for the "moved" variants
CLOCKS = ["real", "moved"]


def on_clock(target, request, clock: str) -> None:
    """For the "moved" variant, the host's clock a day on; skipped where it cannot move (the real-clock variant has
    judged the rule there)."""
    if clock == "moved":
        try:
            life = request.getfixturevalue("host_clock")
        except Inconclusive as exc:
            pytest.skip(reason=f"the host's clock cannot be moved: {exc}")
        if target.clock_offset == 0:
            life.advance(MOVED)


def shifted(target, hours: int):
    """An activation whose request time is `hours` off the host's clock (the control channel may have moved it)."""
    request = target.request()  # real time plus the host's clock offset
    return target.activate(dataclasses.replace(request, request_time=request.request_time + hours * HOUR))


def expect_interval(target, name: str) -> None:
    """The interval `name` the host dictates equals the one it is configured with (default or --name)."""
    result = target.activate()
    if result.response is None:
        raise ClauseFailure(["Response"], result.outcome, result.transcript)
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
@pytest.mark.parametrize("clock", CLOCKS)
@pytest.mark.parametrize("sign", [-1, 1], ids=["past", "future"])
def test_request_time_far_off_refused(kms_target, sign, clock, request, clause):
    on_clock(kms_target, request, clock)
    result = shifted(kms_target, sign * clause.expect["offset_hours"])
    expect_outcome(result.outcome, clause.accept, result.transcript,
                   detail=f"for a request time {clause.expect['offset_hours']} h off the host's clock "
                          f"({'moved a day on' if clock == 'moved' else 'as it is'})")


@pytest.mark.clause("KMS-TIME-004")
@pytest.mark.parametrize("clock", CLOCKS)
@pytest.mark.parametrize("sign", [-1, 1], ids=["past", "future"])
def test_request_time_within_tolerance_accepted(kms_target, sign, clock, request, clause):
    on_clock(kms_target, request, clock)
    hours = clause.expect["offset_hours"]
    result = shifted(kms_target, sign * hours)
    expect(result.response is not None, f"an activation for a request time {hours} h off the host's clock"
           + (" (moved a day on)" if clock == "moved" else ""),
           result.outcome, result.transcript)
