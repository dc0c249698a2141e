"""Activation thresholds and the shared count (guide 10.1 and its worked example, PROTOCOL.md 10.1).

KMS-THR-001/002 run against any host, including one that already serves real clients:
they use fresh random CMIDs, judge only deltas, and are inconclusive (with the reason)
when the host's state hides the rule, e.g. a count already at its cap. THR-003/004 need
a known, empty client table, so they need the control channel.
"""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import Inconclusive, expect

WIN7_ENT, WIN7_PRO, WS2008R2_ENT = "Windows 7 Enterprise", "Windows 7 Professional", "Windows Server 2008 R2 Enterprise"
CLIENT_EDITION = "Windows 10/11 Enterprise"  # N = 25, cache cap 50: the most room to observe deltas
SERVER_EDITION = "Windows Server 2019 Datacenter"  # N = 5
NEW_CLIENTS = 3  # fresh CMIDs THR-001 sends: three deltas, not one lucky one


@pytest.fixture
def known_state_if_possible(request, kms_target):
    """Empty the client table where a control channel allows it; elsewhere take the host as it is."""
    if kms_target.control is not None:
        request.getfixturevalue("control").reset()  # the control fixture also resets again afterwards


def count_for(target, product: str, cmid: uuid.UUID | None = None, **fields) -> tuple[int, object]:
    """The count the host reports to one activation of `product` (a fresh CMID unless given)."""
    edition = target.edition(product)
    # the edition's own protocol, as its real clients speak; the newest selected one if that is deselected
    protocol = edition.protocol if edition.protocol in target.protocols else max(target.protocols)
    result = target.activate(target.request(protocol, edition=edition, cmid=cmid or uuid.uuid4(), **fields))
    expect(result.verified, f"a verified answer to an activation of {product}",
           "; ".join(result.problems) or "no response", result.transcript)
    return result.response.response.count, result


@pytest.mark.clause("KMS-THR-001")
def test_new_cmid_adds_one(kms_target, known_state_if_possible):
    cap = 2 * kms_target.edition(CLIENT_EDITION).n_policy  # a genuine host's cap once it has seen N = 25
    seen, transcripts = [], []
    for _ in range(NEW_CLIENTS + 1):
        count, result = count_for(kms_target, CLIENT_EDITION)
        seen.append(count)
        transcripts += result.transcript
    # only steps that start below the cap can show the +1: at the cap the oldest entry makes room
    steps = [(a, b) for a, b in zip(seen, seen[1:]) if a < cap]
    if not steps:
        raise Inconclusive(f"the count is already at the cap of 2 x N = {cap} (counts {seen}): "
                           f"a new CMID cannot raise it")
    wrong = [f"{a} -> {b}" for a, b in steps if b != a + 1]
    expect(not wrong, "+1 for each new CMID below the cap", f"counts {seen}; wrong steps: {', '.join(wrong)}",
           transcripts)


@pytest.mark.clause("KMS-THR-002")
def test_repeated_cmid_does_not_add(kms_target, known_state_if_possible):
    cap = 2 * kms_target.edition(CLIENT_EDITION).n_policy
    cmid = uuid.uuid4()
    first, r1 = count_for(kms_target, CLIENT_EDITION, cmid)
    again, r2 = count_for(kms_target, CLIENT_EDITION, cmid)
    expect(again == first, f"count {first} again for the same CMID", again, r1.transcript + r2.transcript)
    # an unchanged count only means something if the count can still move: a fresh CMID must raise it
    moved, r3 = count_for(kms_target, CLIENT_EDITION)
    if moved <= again:
        why = (f"the count is at the cap of 2 x N = {cap}" if again >= cap
               else "a new CMID did not raise the count either (see KMS-THR-001)")
        raise Inconclusive(f"{why} (counts {first}, {again}, then {moved} for a new CMID): "
                           f"a repeat cannot be told from a new client")


@pytest.mark.clause("KMS-THR-003")
def test_guides_worked_example(kms_target, control):
    """Two Windows 7 machines, a Windows 7 VM, then a Server 2008 R2 machine: 1, 2, 3, 4 (one shared count)."""
    control.reset()
    steps = [(WIN7_ENT, {}), (WIN7_PRO, {}), (WIN7_ENT, {"vm": 1}), (WS2008R2_ENT, {})]
    counts, transcripts = [], []
    for product, fields in steps:
        count, result = count_for(kms_target, product, **fields)
        counts.append(count)
        transcripts += result.transcript
    want = clause("KMS-THR-003").expect["counts"]
    expect(counts == want, f"{want} for {', '.join(p + (' (VM)' if f else '') for p, f in steps)}", counts,
           transcripts)


@pytest.mark.clause("KMS-THR-004")
@pytest.mark.parametrize("product,threshold", [(SERVER_EDITION, "server_threshold"), (CLIENT_EDITION, "client_threshold")],
                         ids=["server-5", "client-25"])
def test_activation_threshold(kms_target, control, product, threshold):
    control.reset()
    n = clause("KMS-THR-004").expect[threshold]
    # the client decides from its own N (ActivationResult.activated): the catalog's N must be the clause's
    assert kms_target.edition(product).n_policy == n, f"catalog N of {product} is not the clause's {n}"
    for client in range(1, n + 1):
        count, result = count_for(kms_target, product)
        expect(result.activated == (client >= n), f"{product} activated from the {n}th distinct client, not before",
               f"client {client}: count {count}, activated {result.activated}", result.transcript)
