"""Product groups: Tables 1 and 2 (guide; PROTOCOL.md 11) and refusals with 0xC004F042.

The host's key group is declared with --host-key-group, or inferred ("auto") as the
highest Table 2 tier whose editions the host all activates. The embedded reference host
carries the catalog's default (newest) keys, which activate every Table 1 edition.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import pytest

from conformance.catalog import TIERS, Edition
from conformance.harness.clauses import get as clause
from conformance.harness.evidence import Inconclusive, expect


class Answer(NamedTuple):
    edition: Edition
    accepted: bool  # a verified activation response
    hresult: int | None  # the refusal's HRESULT, None when accepted or not answered with one
    transcript: list


@pytest.fixture(scope="module")
def table1_answers(kms_target) -> dict[str, Answer]:
    """Edition name -> the host's answer, for every Table 1 edition (one fresh-CMID request each, its SKU/KMS id)."""
    answers = {}
    for edition in kms_target.catalog.table1():
        protocol = edition.protocol if edition.protocol in kms_target.protocols else max(kms_target.protocols)
        result = kms_target.activate(kms_target.request(protocol, edition=edition))
        answers[edition.name] = Answer(edition, result.verified, result.hresult, result.transcript)
    return answers


def accepted_tiers(catalog, answers: dict[str, Answer]) -> dict[str, str]:
    """Tier -> "all", "some" or "none" of its Table 1 editions accepted."""
    out = {}
    for tier in TIERS:
        got = [a.accepted for a in answers.values() if catalog.tier_of(a.edition.kms_id) == tier]
        out[tier] = "all" if all(got) else "some" if any(got) else "none"
    return out


def expected_set(kms_target, answers: dict[str, Answer]) -> tuple[str, frozenset[uuid.UUID]]:
    """The host key group and the KMS ids it must activate: declared, the embedded host's, or inferred."""
    catalog, group = kms_target.catalog, kms_target.key_group
    if group != "auto":
        return group, catalog.host_key(group).activates
    if kms_target.embedded:  # we started it: default keys, known exactly, so no inference needed
        keys = catalog.default_host_keys()
        return "the embedded host's default keys", frozenset().union(*(k.activates for k in keys))
    full = [tier for tier, share in accepted_tiers(catalog, answers).items() if share == "all"]
    if not full:
        raise Inconclusive("the host fully activates no Table 2 group, so its key group cannot be inferred; "
                           "declare it with --host-key-group")
    return f"{full[-1]} (inferred)", catalog.host_key(full[-1]).activates


def hex_or(code: int | None, otherwise: str) -> str:
    return f"0x{code:08X}" if code is not None else otherwise


@pytest.mark.clause("KMS-GRP-001")
def test_table_2_matrix(kms_target, table1_answers):
    want = clause("KMS-GRP-001").expect["hresult"]
    group, activates = expected_set(kms_target, table1_answers)
    wrong, transcripts = [], []
    for name, answer in table1_answers.items():
        should = answer.edition.kms_id in activates
        if should and not answer.accepted:
            wrong.append(f"{name}: refused ({hex_or(answer.hresult, 'no verified answer')})")
        elif not should and answer.accepted:
            wrong.append(f"{name}: activated, but a {group} key does not cover it")
        elif not should and answer.hresult != want:
            wrong.append(f"{name}: refused with {hex_or(answer.hresult, 'no HRESULT')}, not 0x{want:08X}")
        else:
            continue
        transcripts += answer.transcript
    expect(not wrong, f"exactly Table 2's editions for host key group {group}, the rest refused with 0x{want:08X}",
           "; ".join(wrong), transcripts)


@pytest.mark.clause("KMS-GRP-002")
def test_accepted_groups_are_downward_closed(kms_target, table1_answers):
    shares = accepted_tiers(kms_target.catalog, table1_answers)
    if all(share == "none" for share in shares.values()):
        raise Inconclusive("the host activates no Table 1 edition: there is no hierarchy to observe")
    # a prefix of the hierarchy, each group taken whole: all, ..., all, none, ..., none
    top = max(i for i, tier in enumerate(TIERS) if shares[tier] != "none")
    ok = all(shares[t] == "all" for t in TIERS[: top + 1])
    got = ", ".join(f"{tier}: {share}" for tier, share in shares.items())
    expect(ok, f"whole groups, a prefix of {' < '.join(TIERS)}", got)


@pytest.mark.clause("KMS-GRP-003")
def test_unknown_kms_id_refused(kms_target):
    want = clause("KMS-GRP-003").expect["hresult"]
    protocol = max(kms_target.protocols)
    result = kms_target.activate(kms_target.request(protocol, kms_id=uuid.uuid4()))  # no host key knows a random id
    got = hex_or(result.hresult, "activated" if result.verified else "; ".join(result.problems) or "no answer")
    expect(result.hresult == want, f"refusal 0x{want:08X}", got, result.transcript)
