"""The client's licensing life (guide 10.3): property tests on a virtual clock, and the simulation."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.reference.client.lifecycle import (DAY, FAILURE_RETRY_MINUTES, REARM_LIMIT, VALIDITY_MINUTES, Answer, ClientLifecycle, Licence, RearmLimitReached)
from conformance.reference.simulate import simulate

# one attempt's outcome: unreachable host, a count below N, or enough (with the host's intervals)
outcomes = st.one_of(st.none(), st.builds(Answer, count=st.integers(0, 24)),
                     st.builds(Answer, count=st.integers(25, 50), activation_interval=st.integers(15, 43200),
                               renewal_interval=st.integers(15, 43200)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(outcomes, st.floats(0, 400 * DAY)), max_size=60))
def test_never_activated_180_days_past_the_last_success_and_retries_on_time(steps):
    life = ClientLifecycle(n_policy=25)
    now = 0.0
    for answer, idle in steps:
        now = life.next_attempt
        was_activated = life.licence is Licence.ACTIVATED and now < life.valid_until
        life.attempt(now, answer)
        if answer is not None and answer.count >= 25:
            assert life.next_attempt == now + answer.renewal_interval
        elif was_activated:
            assert life.next_attempt == now + FAILURE_RETRY_MINUTES
        else:
            assert life.next_attempt == now + life.activation_interval
        later = now + idle
        life.advance(later)
        if life.licence is Licence.ACTIVATED:
            assert later - life.last_success < VALIDITY_MINUTES


def test_host_dictates_the_retry_interval():
    life = ClientLifecycle(n_policy=25)
    life.attempt(0, Answer(count=3, activation_interval=60))
    assert life.next_attempt == 60 and life.licence is Licence.GRACE


def test_grace_runs_out_and_rearm_is_limited():
    life = ClientLifecycle(n_policy=5)
    life.advance(30 * DAY)
    assert life.licence is Licence.UNLICENSED
    for n in range(REARM_LIMIT):
        life.rearm(30 * DAY + n)
        assert life.licence is Licence.GRACE
    with pytest.raises(RearmLimitReached):
        life.rearm(31 * DAY)


def test_simulation_plays_the_guide_out():
    result = simulate(clients=30, servers=6, days=200, seed=3)
    assert result.final_count == 36
    assert all(m.life.licence is Licence.ACTIVATED for m in result.machines)
    activations = [e for e in result.events if e.what.startswith("activated")]
    assert len(activations) == 36
    for event in activations:
        assert event.count >= (5 if event.machine.startswith("server") else 25), event
    # the count passes 5 before it passes 25: the first server activates before the first client
    first = lambda kind: min(e.day for e in activations if e.machine.startswith(kind))
    assert first("server") < first("client")


def test_simulation_host_outage_expires_activations_after_180_days():
    result = simulate(clients=25, servers=5, days=400, seed=1, host_down=(10, 400))
    expiries = [e for e in result.events if "expired" in e.what]
    assert len(expiries) == 30
    assert all(180 <= e.day <= 191 for e in expiries)
    assert all(m.life.licence is Licence.UNLICENSED for m in result.machines)


def test_few_clients_never_activate():
    result = simulate(clients=10, servers=0, days=60, seed=2)
    assert result.final_count == 10 and not any(e.what.startswith("activated") for e in result.events)
