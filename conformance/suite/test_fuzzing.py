"""A short fuzz campaign against the target (run with `-m fuzz`; findings saved under reports/findings)."""

from pathlib import Path

import pytest

from conformance.fuzz.campaign import campaign
from conformance.harness.clauses import get as clause
from conformance.harness.evidence import expect


@pytest.mark.fuzz
@pytest.mark.clause("KMS-ROB-005")
def test_fuzz_campaign(kms_target):
    rule = clause("KMS-ROB-005").expect
    result = campaign(kms_target, runs=rule["runs"], timeout=rule["timeout"], findings_dir=Path("reports/findings"))
    expect(not result.findings, f"no finding in {result.runs} mutated exchanges",
           [f"{f.outcome}: {f.mutation.describe()} -> {f.detail} ({f.pcap})" for f in result.findings[:10]])
