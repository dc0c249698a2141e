"""Each KMS-MSG, KMS-TIME and KMS-ROB clause fails against a reference host broken to violate it."""

import pytest

from faulty import run_suite

FAULTS = [
    ({"quirks": {"wrong-version"}}, "KMS-MSG-001"),
    ({"quirks": {"bad-hash"}}, "KMS-MSG-002"),
    ({"quirks": {"bad-hmac"}}, "KMS-MSG-002"),
    ({"quirks": {"wrong-cmid"}}, "KMS-MSG-003"),
    ({"quirks": {"wrong-time"}}, "KMS-MSG-003"),
    ({"quirks": {"bad-epid"}}, "KMS-MSG-004"),
    ({"quirks": {"random-epid"}}, "KMS-MSG-005"),
    ({"quirks": {"random-hwid"}}, "KMS-MSG-006"),
    ({"quirks": {"accept-bad-version"}}, "KMS-MSG-007"),
    ({"quirks": {"pad-response"}}, "KMS-MSG-008"),
    ({"quirks": {"reuse-request-iv"}}, "KMS-MSG-009"),
    ({"activation_interval": 60}, "KMS-TIME-001"),
    ({"renewal_interval": 1440}, "KMS-TIME-002"),
    ({"quirks": {"ignore-time"}}, "KMS-TIME-003"),
    ({"time_tolerance": 3600}, "KMS-TIME-004"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-002"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-003"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-004"),
]


@pytest.mark.parametrize("config,clause", FAULTS, ids=[f"{c}-{'-'.join(sorted(map(str, k.get('quirks', k))))}"
                                                       for k, c in FAULTS])
def test_clause_fails_on_faulty_host(tmp_path, config, clause):
    config = dict(config)
    if "quirks" in config:
        config["quirks"] = frozenset(config["quirks"])
    records = run_suite(tmp_path, clauses=[clause], **config)
    assert records[clause]["verdict"] == "fail", records[clause]


def test_rob_001_fails_when_a_negative_check_kills_the_host(tmp_path):
    records = run_suite(tmp_path, clauses=["KMS-ROB-002", "KMS-ROB-001"], quirks=frozenset({"crash-on-malformed"}))
    assert records["KMS-ROB-001"]["verdict"] == "fail", records["KMS-ROB-001"]
