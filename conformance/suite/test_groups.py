"""Product groups: Tables 1 and 2 (guide; PROTOCOL.md 11) and refusals with 0xC004F042."""

from __future__ import annotations

import uuid

import pytest

from conformance.catalog import TIERS
from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect


@pytest.fixture(scope="module")
def table1_answers(kms_target):
    """Edition name -> (accepted, HRESULT or None) for every Table 1 edition (one request each)."""
    answers = {}
    for edition in kms_target.catalog.table1():
        result = kms_target.activate(kms_target.request(edition.protocol, edition=edition))
        answers[edition.name] = (result.response is not None and result.verified, result.hresult, edition)
    return answers


def expected_set(kms_target, answers) -> tuple[str, frozenset]:
    """The key group and the KMS ids it activates: as declared, or inferred (the highest fully accepted tier)."""
    group = kms_target.key_group
    if group == "auto":
        group = None
        for tier in TIERS:
            tier_editions = [a for a in answers.values() if kms_target.catalog.tier_of(a[2].kms_id) == tier]
            if tier_editions and all(accepted for accepted, _, _ in tier_editions):
                group = tier
        if group is None:
            return "none (nothing of Table 1 activated)", frozenset()
    return group, kms_target.catalog.host_key(group).activates


@pytest.mark.clause("KMS-GRP-001")
def test_table_2_matrix(kms_target, table1_answers):
    rule = clause("KMS-GRP-001").expect
    group, activates = expected_set(kms_target, table1_answers)
    wrong = []
    for name, (accepted, code, edition) in table1_answers.items():
        should = edition.kms_id in activates
        if should and not accepted:
            wrong.append(f"{name}: refused ({'0x%08X' % code if code is not None else 'no answer'})")
        elif not should and accepted:
            wrong.append(f"{name}: activated, but a {group} key does not cover it")
        elif not should and code != rule["hresult"]:
            wrong.append(f"{name}: refused with {'0x%08X' % code if code is not None else 'no HRESULT'}, "
                         f"not 0x{rule['hresult']:08X}")
    expect(not wrong, f"Table 2's set for host key group {group}", "; ".join(wrong))


@pytest.mark.clause("KMS-GRP-002")
def test_accepted_groups_are_downward_closed(kms_target, table1_answers):
    accepted_tiers = []
    for tier in TIERS:
        results = [acc for acc, _, ed in table1_answers.values() if kms_target.catalog.tier_of(ed.kms_id) == tier]
        if all(results):
            accepted_tiers.append(tier)
        elif any(results):
            accepted_tiers.append(f"{tier} (partly)")
    prefix = [t for t in TIERS[: len(accepted_tiers)]]
    expect(accepted_tiers == prefix, f"a prefix of {' < '.join(TIERS)}", accepted_tiers or "nothing")


@pytest.mark.clause("KMS-GRP-003")
def test_unknown_kms_id_refused(kms_target):
    rule = clause("KMS-GRP-003").expect
    result = kms_target.activate(kms_target.request(6, kms_id=uuid.uuid4()))
    got = f"0x{result.hresult:08X}" if result.hresult is not None else ("activated" if result.verified else "other")
    expect(result.hresult == rule["hresult"], f"refusal 0x{rule['hresult']:08X}", got, result.transcript)
