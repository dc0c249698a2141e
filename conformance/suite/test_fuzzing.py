"""A fuzz campaign against the target (run with `-m fuzz`; findings saved under reports/findings/shard-K/).

The campaign is split into shards (`--fuzz-shards`, by default one per xdist worker), which
pytest-xdist spreads over processes (`-n auto`) or machines; every shard hits the same
target, and the clause's verdict is the worst of its shards'. The shards' figures are merged
into reports/fuzz-campaign.json. With --target-cmd each shard starts the target itself and watches it:
a crash, a sanitizer report or a hang is a finding too.
"""

import pytest

from conformance.fuzz.campaign import finding_counts
from conformance.harness.evidence import expect


@pytest.mark.fuzz
@pytest.mark.clause("KMS-ROB-005")
def test_fuzz_campaign(kms_target, fuzz_shard, pytestconfig, clause):
    rule = clause.expect
    total = pytestconfig.getoption("--fuzz-runs") or rule["runs"]
    result = fuzz_shard.run(kms_target, total, name="KMS-ROB-005", timeout=rule["timeout"])
    # the actual: one entry per kind of finding (what a deviation declares); the reproducers in the detail
    kinds = sorted(finding_counts(result))
    expect(not result.findings,
           f"no finding in {result.runs} mutated exchanges (shard {fuzz_shard.index} of {fuzz_shard.count})", kinds,
           detail="; ".join(f"{f.outcome} x{f.count}: {f.detail}; input {f.input.describe()} ({f.pcap}; {f.replay})"
                            for f in result.findings[:10]))
