"""Product groups: Tables 1 and 2 (guide; PROTOCOL.md 11), the ePID's key against what the host activates.

Which host key a host carries is what its ePID names (group id and key id range; PROTOCOL.md 8),
or what --host-key-group declares. GRP-001 and GRP-004 judge the host's answers against that
claim; GRP-002 judges the shape of the answers alone. Every probe uses the audit's one CMID.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import pytest

from conformance import catalog as catalog_mod
from conformance.catalog import TIERS, Edition
from conformance.harness.evidence import Inconclusive, expect, expect_outcome
from conformance.harness.judgments import epid_key_mismatch
from conformance.harness.phases import run_phase
from conformance.net.outcomes import Response
from conformance.wire import epid as epid_mod


class Answer(NamedTuple):
    edition: Edition
    accepted: bool  # a KMS response, opened or not (what it says is other clauses' business)
    hresult: int | None  # the refusal's HRESULT, None when accepted or not answered with one
    epid: str | None
    described: str
    transcript: list


def protocol_of(target, edition: Edition) -> int:
    """The version an edition is asked in: its generation's where the host serves it, else the newest served."""
    return edition.protocol if edition.protocol in target.serves.served else target.serves.newest


def ask(target, edition: Edition) -> Answer:
    """The host's answer to one activation of `edition`, in its generation's protocol where the host serves it."""
    result = target.activate(target.request(protocol_of(target, edition), edition=edition))
    epid = result.response.response.epid if result.response is not None else None
    return Answer(edition, isinstance(result.outcome, Response), result.hresult, epid, result.describe(),
                  result.transcript)


@pytest.fixture(scope="module")
def edition_answers(kms_target, pytestconfig) -> dict[str, Answer]:
    """Edition name -> the host's answer, for every Table 1 edition and one edition of each KMS id: one phase
    (at once where the host allows: harness.phases), each edition asked once."""
    editions = {e.name: e for e in [*kms_target.catalog.table1(), *first_of_each_kms_id(kms_target.catalog)]}
    answers = run_phase(pytestconfig, "Table 1 and every KMS id", editions.values(), lambda e: ask(kms_target, e),
                        lambda e: protocol_of(kms_target, e))
    return dict(zip(editions, answers))


def first_of_each_kms_id(catalog) -> list[Edition]:
    first: dict[uuid.UUID, Edition] = {}
    for edition in catalog.editions:
        first.setdefault(edition.kms_id, edition)
    return list(first.values())


@pytest.fixture(scope="module")
def table1_answers(kms_target, edition_answers) -> dict[str, Answer]:
    """Edition name -> the host's answer, for every Table 1 edition."""
    return {edition.name: edition_answers[edition.name] for edition in kms_target.catalog.table1()}


@pytest.fixture(scope="module")
def kms_id_answers(kms_target, edition_answers) -> dict[uuid.UUID, Answer]:
    """KMS id -> the host's answer to one edition of it, for every KMS id of the catalog."""
    return {e.kms_id: edition_answers[e.name] for e in first_of_each_kms_id(kms_target.catalog)}


def accepted_tiers(catalog, answers: dict[str, Answer], column: str) -> dict[str, str]:
    """Tier -> "all", "some" or "none" of its Table 1 editions of one column (generation) accepted."""
    out = {}
    for tier in TIERS:
        got = [a.accepted for a in answers.values() if catalog.tier_of(a.edition.kms_id) == tier
               and catalog.kms_id(a.edition.kms_id).table1_column == column]
        out[tier] = "all" if all(got) else "some" if any(got) else "none"
    return out


def claimed_keys(target, answers) -> tuple[str, list[catalog_mod.HostKey]]:
    """The host key(s) to judge Table 2 against: declared, else those the Windows ePIDs name."""
    catalog = target.catalog
    if target.key_group != "auto":
        key = catalog.host_key(target.key_group)
        return f"{key.name} (declared)", [key]
    epids = {a.epid for a in answers if a.epid and a.edition.app_id == catalog_mod.WINDOWS_APP_ID}
    epids |= {e for p, e in target.serves.epids.items()
              if target.serves.served[p].app_id == catalog_mod.WINDOWS_APP_ID}
    keys = {k.slug: k for text in epids for k in epid_mod.keys_named(text, catalog)}
    if not keys:
        raise Inconclusive(f"no Windows ePID of the host names a host key of the catalog ({sorted(epids) or 'none'}): "
                           f"declare it with --host-key-group")
    return " / ".join(k.name for k in keys.values()) + " (named by the ePID)", list(keys.values())


@pytest.mark.clause("KMS-GRP-001")
def test_table_2_matrix(kms_target, table1_answers, clause):
    want = clause.expect["hresult"]
    group, keys = claimed_keys(kms_target, table1_answers.values())
    activates = frozenset().union(*(k.activates for k in keys))
    wrong, transcripts = [], []
    for name, answer in table1_answers.items():
        should = answer.edition.kms_id in activates
        if should and not answer.accepted:
            wrong.append(f"{name}: {answer.described}")
        elif not should and answer.accepted:
            wrong.append(f"{name}: activated, but the {group} key does not cover it")
        elif not should and answer.hresult != want:
            wrong.append(f"{name}: {answer.described}, not a refusal with 0x{want:08X}")
        else:
            continue
        transcripts += answer.transcript
    expect(not wrong, f"exactly Table 2's editions for {group}, the rest refused with 0x{want:08X}", wrong,
           transcripts)


@pytest.mark.clause("KMS-GRP-002")
def test_accepted_groups_are_downward_closed(kms_target, table1_answers):
    catalog = kms_target.catalog
    columns = sorted({catalog.kms_id(a.edition.kms_id).table1_column for a in table1_answers.values()})
    wrong, seen = {}, False
    for column in columns:  # each generation of Table 1 on its own: a Vista-era key knows no Windows 7 group
        shares = accepted_tiers(catalog, table1_answers, column)
        if all(share == "none" for share in shares.values()):
            continue
        seen = True
        # a prefix of the hierarchy, each group taken whole: all, ..., all, none, ..., none
        top = max(i for i, tier in enumerate(TIERS) if shares[tier] != "none")
        if not all(shares[t] == "all" for t in TIERS[: top + 1]):
            wrong[column] = shares
    if not seen:
        raise Inconclusive("the host activates no Table 1 edition: there is no hierarchy to observe")
    expect(not wrong, f"whole groups, a prefix of {' < '.join(TIERS)}, in each generation of Table 1", wrong)


@pytest.mark.clause("KMS-GRP-003")
def test_unknown_kms_id_refused(kms_target, clause):
    result = kms_target.activate(kms_target.request(kms_id=uuid.uuid4()))  # no host key knows a random id
    expect_outcome(result.outcome, clause.accept, result.transcript, detail="for a random KMS id")


@pytest.mark.clause("KMS-GRP-004")
def test_epid_key_matches_activations(kms_target, kms_id_answers):
    catalog = kms_target.catalog
    named = {a.epid: epid_mod.keys_named(a.epid, catalog) for a in kms_id_answers.values() if a.epid}
    mismatch = epid_key_mismatch(kms_id_answers, named)
    if not mismatch.judged:
        raise Inconclusive(f"no ePID of the host names a host key of the catalog ({', '.join(mismatch.unknown)})")
    expect(not mismatch.actual, "exactly the editions of the host key(s) its ePIDs name", mismatch.actual,
           [exchange for answer in mismatch.evidence for exchange in answer.transcript],
           detail=f"ePIDs naming no catalog key, not judged: {', '.join(mismatch.unknown)}" if mismatch.unknown else "")
