"""Activation thresholds and the shared count (guide 10.1 and its worked example, PROTOCOL.md 10.1)."""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import Inconclusive, expect

WIN7_ENT, WIN7_PRO, WS2008R2_ENT = "Windows 7 Enterprise", "Windows 7 Professional", "Windows Server 2008 R2 Enterprise"
CLIENT_EDITION = "Windows 10/11 Enterprise"  # N = 25, cache cap 50: the most room to observe deltas
SERVER_EDITION = "Windows Server 2019 Datacenter"  # N = 5


def count_for(target, product: str, cmid: uuid.UUID | None = None, **fields) -> tuple[int, object]:
    edition = target.edition(product)
    result = target.activate(target.request(edition.protocol, edition=edition, cmid=cmid or uuid.uuid4(), **fields))
    expect(result.response is not None, f"an activation of {product}", result.problems, result.transcript)
    return result.response.response.count, result


@pytest.mark.clause("KMS-THR-001")
def test_new_cmid_adds_one(kms_target):
    if kms_target.control is not None:
        kms_target.control.reset()  # a known state where the rule is observable
    before, first = count_for(kms_target, CLIENT_EDITION)
    after, second = count_for(kms_target, CLIENT_EDITION)
    if after == before and before >= 2 * kms_target.edition(CLIENT_EDITION).n_policy:
        raise Inconclusive(f"the count is already {before}, the cap of 2 x N: a new CMID cannot raise it")
    expect(after == before + 1, f"count {before + 1} after a new CMID (was {before})", after,
           first.transcript + second.transcript)


@pytest.mark.clause("KMS-THR-002")
def test_repeated_cmid_does_not_add(kms_target):
    cmid = uuid.uuid4()
    before, first = count_for(kms_target, CLIENT_EDITION, cmid)
    again, second = count_for(kms_target, CLIENT_EDITION, cmid)
    expect(again == before, f"count {before} again for the same CMID", again, first.transcript + second.transcript)


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
    expect(counts == want, want, counts, transcripts)


@pytest.mark.clause("KMS-THR-004")
@pytest.mark.parametrize("product,threshold", [(SERVER_EDITION, "server_threshold"), (CLIENT_EDITION, "client_threshold")],
                         ids=["server-5", "client-25"])
def test_activation_threshold(kms_target, control, product, threshold):
    control.reset()
    n = clause("KMS-THR-004").expect[threshold]
    for client in range(1, n + 1):
        _, result = count_for(kms_target, product)
        expect(result.activated == (client >= n), f"{product} activated only from the {n}th client",
               f"client {client}: count {result.response.response.count}, activated {result.activated}",
               result.transcript)
