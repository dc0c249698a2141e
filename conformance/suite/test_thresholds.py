"""Activation thresholds and the one shared count (guide 10.1 and its worked example, PROTOCOL.md 10.1, 16).

THR-001/002 run first in the run, before other checks' traffic: they send fresh CMIDs, judge
only deltas, and are inconclusive (with the reason) when the host's state hides the rule, e.g. a
count already at its cap. THR-005/006 judge what answers alone can contradict, on any host and
with the audit's one CMID: no count above 50, and one count whatever the request's N policy.
THR-003/004 need a known, empty client table: the control channel's reset, or a fresh start of a
host the suite runs itself (--target-cmd).
"""

from __future__ import annotations

import uuid

import pytest

from conformance import catalog as catalog_mod
from conformance.harness.evidence import Inconclusive, expect
from conformance.harness.judgments import judge_one_count, repeat_hidden, wrong_steps
from conformance.harness.profile import NotServed
from conformance.net.outcomes import Response

from .helpers import as_a_live_host, count_for, counting_edition, windows_edition

WIN7_ENT, WIN7_PRO, WS2008R2_ENT = "Windows 7 Enterprise", "Windows 7 Professional", "Windows Server 2008 R2 Enterprise"
NEW_CLIENTS = 3  # fresh CMIDs THR-001 sends: three deltas, not one lucky one


@pytest.fixture
def known_state_if_possible(request, kms_target):
    """Empty the client table where a control channel does it in one command; elsewhere take the host as it is
    (a host the suite started is fresh at the run's start, and deltas need no empty table)."""
    if kms_target.life is not None and kms_target.life.means == "control":
        request.getfixturevalue("fresh_host").reset()  # the fixture also resets again afterwards


@pytest.mark.clause("KMS-THR-001")
def test_new_cmid_adds_one(kms_target, known_state_if_possible):
    edition = counting_edition(kms_target)
    seen, transcripts = [], []
    for _ in range(NEW_CLIENTS + 1):
        count, result = count_for(kms_target, edition)
        seen.append(count)
        transcripts += result.transcript
    cap = 2 * edition.n_policy  # below it every cache has room: at it the oldest entry makes room instead
    wrong = wrong_steps(seen, cap)
    if wrong is None:
        raise Inconclusive(f"the count is already at the cap of 2 x N = {cap} for {edition.name} "
                           f"(counts {seen}): a new CMID cannot raise it")
    expect(not wrong, "+1 for each new CMID below the cap", {"counts": seen, "wrong steps": wrong}, transcripts)


@pytest.mark.clause("KMS-THR-002")
def test_repeated_cmid_does_not_add(kms_target, known_state_if_possible):
    edition = counting_edition(kms_target)
    cmid = uuid.uuid4()
    first, r1 = count_for(kms_target, edition, cmid)
    again, r2 = count_for(kms_target, edition, cmid)
    expect(again == first, f"count {first} again for the same CMID", again, r1.transcript + r2.transcript)
    # an unchanged count only means something if the count can still move: a fresh CMID must raise it
    moved, _ = count_for(kms_target, edition)
    hidden = repeat_hidden(first, again, moved, 2 * edition.n_policy)
    if hidden is not None:
        raise Inconclusive(hidden)


def _catalog_edition_served(target, name: str) -> catalog_mod.Edition:
    edition = target.edition(name)
    result = target.activate(target.request(edition.protocol, edition=edition))  # the audit's CMID: no new client
    if isinstance(result.outcome, Response) and result.response is None:
        raise Inconclusive(f"the answer to {name} does not open ({'; '.join(result.problems)}): its counts cannot "
                           f"be read; see KMS-MSG-001")
    if result.response is None:
        raise NotServed(f"the guide's worked example needs {name}, which the host does not activate "
                        f"({result.describe()}; its ePID names {target.serves.key_description()})")
    return edition


@pytest.mark.clause("KMS-THR-003")
def test_guides_worked_example(kms_target, fresh_host, clause):
    """Two Windows 7 machines, a Windows 7 VM, then a Server 2008 R2 machine: 1, 2, 3, 4 (one shared count)."""
    editions = {name: _catalog_edition_served(kms_target, name) for name in (WIN7_ENT, WIN7_PRO, WS2008R2_ENT)}
    fresh_host.reset()
    steps = [(WIN7_ENT, {}), (WIN7_PRO, {}), (WIN7_ENT, {"vm": 1}), (WS2008R2_ENT, {})]
    counts, transcripts = [], []
    for name, fields in steps:
        count, result = count_for(kms_target, editions[name], **fields)
        counts.append(count)
        transcripts += result.transcript
    want = clause.expect["counts"]
    expect(counts == want, f"{want} for {', '.join(p + (' (VM)' if f else '') for p, f in steps)}", counts,
           transcripts)


@pytest.mark.clause("KMS-THR-004")
@pytest.mark.parametrize("threshold", ["server_threshold", "client_threshold"], ids=["server-5", "client-25"])
def test_activation_threshold(kms_target, fresh_host, threshold, clause):
    n = clause.expect[threshold]
    edition = windows_edition(kms_target, n)
    fresh_host.reset()
    for client in range(1, n + 1):
        count, result = count_for(kms_target, edition)
        # a client activates when the count reaches its own N (PROTOCOL.md C5): the host decides that by the count
        expect((count >= n) == (client >= n), f"a count of {n} or more from the {n}th distinct client, not before",
               f"client {client}: count {count}", result.transcript, detail=f"{edition.name}, N = {n}")


@pytest.mark.clause("KMS-THR-005")
def test_no_count_above_50(kms_target, clause):
    top = clause.expect["max_count"]
    for n_policy in (25, 5):  # answers of this check's own, besides every count the run has seen
        try:
            count_for(kms_target, windows_edition(kms_target, n_policy), fresh=False)
        except NotServed:
            continue
    seen = kms_target.counts_seen
    if not seen:
        raise NotServed("no answer of the run carried a count")
    over = sorted({(count, where) for count, where in seen if count > top})
    expect(not over, f"every count at most {top} ({len(seen)} answers)",
           [f"{count} (answering {where})" for count, where in over[:10]],
           detail="no host's cache holds more than 2 x 25 entries, so no genuine host reports more")


@pytest.mark.clause("KMS-THR-006")
def test_one_count_for_every_n_policy(kms_target, request, clause):
    rule = clause.expect
    client, server = windows_edition(kms_target, 25), windows_edition(kms_target, 5)
    as_a_live_host(kms_target, request, client, 12)
    seen, transcripts = [], []
    for _ in range(rule["rounds"]):  # interleaved within seconds, with the audit's one CMID
        for edition in (client, server):
            count, result = count_for(kms_target, edition, fresh=False)
            seen.append((edition.n_policy, count))
            transcripts += result.transcript
    if {c for _, c in seen} == {1}:  # only the audit's own entry: two tables would answer the same
        raise Inconclusive("every answer counted only the audit's own entry (count 1): one count and two counts "
                           "look alike until other clients are counted")
    verdict = judge_one_count(seen, rule["drift"])
    if verdict.startswith("inconclusive: "):
        raise Inconclusive(verdict.removeprefix("inconclusive: "))
    # two steady counts: each group's last answer is its count
    counts = {f"N={n}": [c for m, c in seen if m == n][-1] for n in (25, 5)}
    expect(verdict == "one count", f"the same count for N = 25 and N = 5 requests (within {rule['drift']})",
           counts, transcripts, detail=verdict)

