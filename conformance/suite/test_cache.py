"""The CMID cache: 2 x the highest N seen, never shrinking, 30-day expiry, renewal restarts it (guide 10.2)."""

from __future__ import annotations

import uuid

import pytest

from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect

SERVER_EDITION = "Windows Server 2019 Datacenter"  # N = 5
CLIENT_EDITION = "Windows 10/11 Enterprise"  # N = 25
DAY = 86400


def counts(target, product: str, clients: int) -> list[int]:
    edition = target.edition(product)
    out = []
    for _ in range(clients):
        result = target.activate(target.request(edition.protocol, edition=edition, cmid=uuid.uuid4()))
        expect(result.response is not None, f"an activation of {product}", result.problems, result.transcript)
        out.append(result.response.response.count)
    return out


def one(target, product: str, cmid: uuid.UUID) -> int:
    edition = target.edition(product)
    result = target.activate(target.request(edition.protocol, edition=edition, cmid=cmid))
    expect(result.response is not None, f"an activation of {product}", result.problems, result.transcript)
    return result.response.response.count


@pytest.mark.clause("KMS-CACHE-001")
def test_server_only_saturates_at_10(kms_target, control):
    control.reset()
    cap = clause("KMS-CACHE-001").expect["cap"]
    seen = counts(kms_target, SERVER_EDITION, cap + 3)
    expect(seen == list(range(1, cap + 1)) + [cap] * 3, f"1..{cap}, then {cap}", seen)


@pytest.mark.clause("KMS-CACHE-002")
def test_first_client_request_grows_cache_to_50(kms_target, control):
    control.reset()
    cap = clause("KMS-CACHE-002").expect["cap"]
    counts(kms_target, SERVER_EDITION, 12)
    seen = counts(kms_target, CLIENT_EDITION, cap - 10 + 3)
    expect(seen == list(range(11, cap + 1)) + [cap] * 3, f"11..{cap}, then {cap}", seen)


@pytest.mark.clause("KMS-CACHE-003")
def test_cache_never_shrinks(kms_target, control):
    control.reset()
    cap = clause("KMS-CACHE-003").expect["cap"]
    counts(kms_target, CLIENT_EDITION, cap)
    seen = counts(kms_target, SERVER_EDITION, 5)
    expect(seen == [cap] * 5, f"N = 5 clients still see {cap} after the cache grew", seen)


@pytest.mark.clause("KMS-CACHE-004")
def test_entries_expire_after_30_days(kms_target, control):
    control.reset()
    days = clause("KMS-CACHE-004").expect["days"]
    counts(kms_target, SERVER_EDITION, 3)
    control.advance(days * DAY - 60)
    just_before = counts(kms_target, SERVER_EDITION, 1)[0]
    expect(just_before == 4, f"all 3 entries still counted a minute before {days} days (count 4)", just_before)
    control.advance(120)
    after = counts(kms_target, SERVER_EDITION, 1)[0]
    expect(after == 2, f"the first 3 entries gone after {days} days (count 2)", after)


@pytest.mark.clause("KMS-CACHE-005")
def test_renewal_restarts_30_days(kms_target, control):
    control.reset()
    days = clause("KMS-CACHE-005").expect["days"]
    renewed, other = uuid.uuid4(), uuid.uuid4()
    one(kms_target, SERVER_EDITION, renewed)
    one(kms_target, SERVER_EDITION, other)
    control.advance(20 * DAY)
    expect(one(kms_target, SERVER_EDITION, renewed) == 2, "count 2 at the renewal", "other")
    control.advance((days - 20) * DAY + 60)  # day 30 + 1 minute: only the renewed entry is younger than 30 days
    after = one(kms_target, SERVER_EDITION, uuid.uuid4())
    expect(after == 2, "the renewed client and the newcomer (count 2); the unrenewed one expired", after)
