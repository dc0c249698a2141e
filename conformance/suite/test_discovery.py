"""How a client under test finds its KMS host through DNS (guide: DNS discovery; PROTOCOL.md 12.2, C1).

pytest --client-cmd "COMMAND {domain}" runs the client in the discovery world of a lab named
(conformance/harness/discovery_lab.py). Every verdict says what named was asked, from its query log.
"""

from __future__ import annotations

import pytest

from conformance.dns.querylog import describe
from conformance.harness.discovery_lab import ANSWERS, REFUSES, DiscoveryRun
from conformance.harness.discovery_mode import weight_test
from conformance.harness.evidence import ClauseFailure, Inconclusive, expect
from conformance.dns.srv import SRV_LABEL

UNSEEN_REFUSALS = ("without the namespace (root) connection attempts to refusing hosts and to addresses nobody "
                   "serves are not seen")


def what_happened(run: DiscoveryRun) -> str:
    """named's view of the run, then the client's: for every verdict."""
    tried = ", ".join(map(str, run.contacts)) or "nobody"
    note = "" if run.sees_refused else f" ({UNSEEN_REFUSALS})"
    return (f"{describe(run.queries)}; it tried {tried}{note}; it exited with "
            f"{'nothing (killed)' if run.process.hung else run.process.returncode}, saying: {run.process.last_lines()}")


def settled(runs: list[DiscoveryRun]) -> list[DiscoveryRun]:
    """The runs, after failing the check if the client hung in one of them."""
    for run in runs:
        if run.process.hung:
            raise ClauseFailure("the client exits once it has activated or given up",
                                f"still running after {run.process.timeout:g} s in the {run.scenario.name!r} "
                                f"scenario (killed)", detail=what_happened(run))
    return runs


def discovering(runs: list[DiscoveryRun], rule: str) -> list[DiscoveryRun]:
    """The runs in which the client asked for the SRV records; none: the rule cannot be observed."""
    asked = [r for r in settled(runs) if r.asked_srv()]
    if not asked:
        run = runs[0]
        raise Inconclusive(f"the client asked named for no {SRV_LABEL}.{run.scenario.domain} SRV record (see "
                           f"KMS-DISC-001), so the hosts it tried say nothing about {rule}; {what_happened(run)}")
    return asked


@pytest.mark.clause("KMS-DISC-001")
def test_asks_srv_and_contacts_only_named_hosts(discovery):
    run = settled([discovery.names()])[0]
    name = f"{SRV_LABEL}.{run.scenario.domain}"
    expect(run.asked_srv(), f"an SRV query for {name}", describe(run.queries), detail=what_happened(run))
    advertised = [h.name for h in run.scenario.hosts if h.listed]
    strays = [c for c in run.contacts if c.host not in advertised]
    expect(not strays, "connections only to " + ", ".join(f"{n} on its advertised port {run.addresses[n][1]}"
                                                            for n in advertised),
           [str(c) for c in strays], detail=what_happened(run))
    expect(bool(run.activated), "an activation at the advertised host", "no KMS request answered",
           detail=what_happened(run))


@pytest.mark.clause("KMS-DISC-002")
def test_lowest_priority_first(discovery):
    runs = discovering(discovery.priority(), "priority")
    scenario = runs[0].scenario
    for number, run in enumerate(runs, 1):
        tried = run.lab_contacts
        for index, name in enumerate(tried):
            priority = scenario.spec(name).priority
            # a refused attempt is seen only in the namespace
            lower = [h.name for h in scenario.hosts if h.priority < priority and (run.sees_refused or h.kind != REFUSES)]
            skipped = [h for h in lower if h not in tried[:index]]
            expect(not skipped, f"{name} (priority {priority}) tried only after every host of a lower priority "
                                f"({', '.join(lower)}) failed", f"run {number} of {len(runs)} tried "
                                f"{' -> '.join(tried)}: {', '.join(skipped)} not before {name}",
                   detail=what_happened(run))
    if not any(r.lab_contacts for r in runs):
        raise Inconclusive(f"the client tried no host in {len(runs)} runs; {what_happened(runs[0])}")


@pytest.mark.clause("KMS-DISC-003")
def test_weights_share_first_contacts(discovery, clause):
    rule = clause.expect
    runs = discovering(discovery.weight(), "weights")
    counts, shares, p = weight_test([run.first_contact for run in runs])
    trials = sum(counts.values())
    if not trials:
        raise Inconclusive(f"the client tried none of the weighted hosts in {len(runs)} runs; "
                           f"{what_happened(runs[0])}")
    expected = {name: f"{share:.0%} of {trials}" for name, share in shares.items()}
    expect(p >= rule["alpha"], {"shares of first contacts": expected, "test": "exact multinomial",
                                "fails below p": rule["alpha"]},
           {"first contacts": counts, "p": round(p, 6)},
           detail=f"weights {rule['weights']} in one priority; a client that follows them fails this test in at most "
                  f"{rule['alpha']:.1%} of sessions; {describe(runs[-1].queries)} (last run)")


@pytest.mark.clause("KMS-DISC-004")
def test_fails_over_to_another_host(discovery):
    runs = discovering(discovery.failover(), "failover")
    run = runs[-1]
    scenario = run.scenario
    first = run.first_contact
    if first is None:
        raise Inconclusive(f"the client tried no host; {what_happened(run)}")
    if scenario.spec(first).kind == ANSWERS:
        raise Inconclusive(f"in {len(runs)} runs the client's first choice answered ({first}): no failover to see; "
                           f"{what_happened(run)}")
    failing = [h.name for h in scenario.hosts if h.kind != ANSWERS and (run.sees_refused or h.kind != REFUSES)]
    expect(bool(run.activated), f"after {first} failed, an activation at another host of the list",
           f"no activation: it tried {' -> '.join(run.lab_contacts)}", detail=what_happened(run))
    before = run.lab_contacts[:run.lab_contacts.index(run.activated[0])]
    expect(set(failing) <= set(before), f"every failing host ({', '.join(failing)}) tried before {run.activated[0]}",
           " -> ".join(run.lab_contacts), detail=what_happened(run))


@pytest.mark.clause("KMS-DISC-005")
def test_reuses_the_host_that_answered(discovery):
    rounds = discovery.cache()
    settled(rounds.runs)
    discovering([rounds.first], "a cached host")
    expect(rounds.cached is not None, "an activation in the first run", "none", detail=what_happened(rounds.first))
    moved = rounds.moved
    expect(moved.first_contact == rounds.cached and moved.activated[:1] == [rounds.cached],
           f"the next activation at {rounds.cached} again, though DNS now puts it at priority 10",
           f"it tried {' -> '.join(moved.lab_contacts) or 'nobody'} and activated at "
           f"{', '.join(moved.activated) or 'none'}", detail=what_happened(moved))


@pytest.mark.clause("KMS-DISC-006")
def test_asks_dns_again_once_the_cached_host_fails(discovery):
    rounds = discovery.cache()
    settled(rounds.runs)
    discovering([rounds.first], "a cached host")
    if rounds.failed is None:
        raise Inconclusive(f"the client did not activate in the first run, so it cached no host; "
                           f"{what_happened(rounds.first)}")
    run = rounds.failed
    expect(run.asked_srv(), f"an SRV query once {rounds.cached} failed", describe(run.queries),
           detail=what_happened(run))
    expect(run.activated[:1] == ["z"], "an activation at z, the host DNS now names (the old list's other host "
                                       "is no longer in DNS)",
           f"activated at {', '.join(run.activated) or 'none'}", detail=what_happened(run))


@pytest.mark.clause("KMS-DISC-007")
def test_host_given_by_hand_asks_no_dns(discovery):
    run = settled([discovery.manual()])[0]
    asked = [q for q in run.queries if q.name.startswith(f"{SRV_LABEL}.") or q.type == "SRV"]
    expect(not asked, f"no {SRV_LABEL} query (discovery is off while a host is set by hand)",
           [str(q) for q in asked], detail=what_happened(run))
    expect({c.host for c in run.contacts} == {"given"}, "a connection to the given host, and to no other",
           f"it tried {' -> '.join(map(str, run.contacts)) or 'nobody'}", detail=what_happened(run))
