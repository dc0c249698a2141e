"""The CMID cache: 2 x the highest N seen, never shrinking, 30-day expiry, renewal restarts it (guide 10.2).

CACHE-001..005 need a known client table and (004/005) the host's clock, so each requests
`fresh_host` (or `host_clock`) and resets first: counts left by other checks mean nothing there.
Either means serves: the reference host's control channel, or a host the suite started itself
(--target-cmd: a fresh start empties it, libfaketime moves its clock). CACHE-006 judges from
answers alone, on any host, with the audit's one CMID.
"""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.evidence import Inconclusive, expect
from conformance.harness.judgments import saturating

from .helpers import as_a_live_host, count_for, windows_edition

DAY = 86400
MARGIN = 60  # seconds either side of the 30-day boundary: the requests themselves take some time


def one(target, n_policy: int, cmid: uuid.UUID | None = None) -> int:
    """The count reported to one activation of a Windows edition with this N (a fresh CMID unless given)."""
    return count_for(target, windows_edition(target, n_policy), cmid)[0]


def counts(target, n_policy: int, clients: int) -> list[int]:
    """The counts reported to `clients` new, distinct clients of an edition with this N."""
    return [one(target, n_policy) for _ in range(clients)]


@pytest.mark.clause("KMS-CACHE-001")
def test_server_only_saturates_at_10(kms_target, fresh_host, clause):
    windows_edition(kms_target, 5)  # learned before the reset: probes must not be the table's first entries
    fresh_host.reset()
    cap = clause.expect["cap"]
    seen = counts(kms_target, 5, cap + 2)  # input: 2 clients past the cap
    expect(seen == saturating(0, cap, 2), f"1..{cap}, then {cap} (only N = 5 clients seen)", seen)


@pytest.mark.clause("KMS-CACHE-002")
def test_first_client_request_grows_cache_to_50(kms_target, fresh_host, clause):
    windows_edition(kms_target, 5), windows_edition(kms_target, 25)
    fresh_host.reset()
    cap = clause.expect["cap"]
    start = counts(kms_target, 5, 12)[-1]  # input: 12 N = 5 clients; KMS-CACHE-001's business whether that is 10
    if start >= cap:
        raise Inconclusive(f"12 N = 5 clients already gave count {start}: no room left to see growth to {cap}")
    seen = counts(kms_target, 25, cap - start + 2)
    expect(seen == saturating(start, cap, 2), f"{start + 1}..{cap}, then {cap} once N = 25 clients came", seen)


@pytest.mark.clause("KMS-CACHE-003")
def test_cache_never_shrinks(kms_target, fresh_host, clause):
    windows_edition(kms_target, 5), windows_edition(kms_target, 25)
    fresh_host.reset()
    cap = clause.expect["cap"]
    grown = counts(kms_target, 25, cap)[-1]
    if grown != cap:
        raise Inconclusive(f"{cap} N = 25 clients gave count {grown}, not {cap}: the cache never grew "
                           f"(see KMS-CACHE-002), so a shrink cannot be seen")
    seen = counts(kms_target, 5, 12)  # input: more than the 10 an N = 5 cache would hold
    expect(seen == [cap] * 12, f"N = 5 clients still see {cap} after the cache grew to {cap}", seen)


@pytest.mark.clause("KMS-CACHE-004")
def test_entries_expire_after_30_days(kms_target, fresh_host, host_clock, clause):
    windows_edition(kms_target, 5)
    fresh_host.reset()
    rule = clause.expect
    days, old = rule["days"], rule["clients"]
    counts(kms_target, 5, old)
    host_clock.advance(days * DAY - MARGIN)
    just_before = one(kms_target, 5)
    expect(just_before == rule["before"], f"all {old} entries still counted just before {days} days (a "
           f"{old + 1}th client: count {rule['before']})", just_before)
    host_clock.advance(2 * MARGIN)  # the first ones are now just over 30 days old, the next 2 minutes
    after = one(kms_target, 5)
    expect(after == rule["after"], f"the first {old} entries gone after {days} days (the {old + 1}th and a "
           f"{old + 2}th client: count {rule['after']})", after)


@pytest.mark.clause("KMS-CACHE-005")
def test_renewal_restarts_30_days(kms_target, fresh_host, host_clock, clause):
    windows_edition(kms_target, 5)
    fresh_host.reset()
    rule = clause.expect
    days, day, want = rule["days"], rule["renewal_day"], rule["counts"]
    renewed, other = uuid.uuid4(), uuid.uuid4()
    one(kms_target, 5, renewed)
    one(kms_target, 5, other)
    host_clock.advance(day * DAY)
    at_renewal = one(kms_target, 5, renewed)
    expect(at_renewal == want["renewal"], f"count {want['renewal']} at the day-{day} renewal (two clients, neither "
           f"expired)", at_renewal)
    host_clock.advance((days - day) * DAY + MARGIN)  # just past day 30: only the renewal is younger than 30 days
    newcomer = one(kms_target, 5)
    expect(newcomer == want["newcomer"], f"the renewed client and a newcomer (count {want['newcomer']}); the "
           f"unrenewed one expired", newcomer)
    # the same, client by client: the renewed CMID is still known, the other one comes back as new
    again = one(kms_target, 5, renewed)
    expect(again == want["renewed"], f"the renewed CMID still counted (count stays {want['renewed']})", again)
    returned = one(kms_target, 5, other)
    expect(returned == want["returned"], f"the unrenewed CMID expired, so it counts as new again (count "
           f"{want['returned']})", returned)


@pytest.mark.clause("KMS-CACHE-006")
def test_no_visible_shrink(kms_target, request, clause):
    rule = clause.expect
    client, server = windows_edition(kms_target, 25), windows_edition(kms_target, 5)
    as_a_live_host(kms_target, request, client, 2 * rule["server_cap"])
    grown, r1 = count_for(kms_target, client, fresh=False)
    if grown <= rule["server_cap"]:
        raise Inconclusive(f"an N = 25 request saw count {grown}, not above the {rule['server_cap']} an N = 5 "
                           f"cache holds: a shrink to 2 x 5 cannot show")
    after, r2 = count_for(kms_target, server, fresh=False)
    expect(after >= grown - rule["drift"], f"about {grown} again for an N = 5 request right after (the cache never "
           f"shrinks)", after, r1.transcript + r2.transcript,
           detail=f"{client.name} saw {grown}, then {server.name} saw {after}; a genuine host's cache holds 2 x the "
                  f"highest N it has seen and never shrinks, so an N = 5 request seconds later sees the same count")
