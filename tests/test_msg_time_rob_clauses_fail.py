"""Each KMS-MSG, KMS-TIME and KMS-ROB clause fails against a reference host broken to violate it.

Each row also names a piece of the failure message, so a proof cannot pass on an unrelated failure.
"""

import pytest

from faulty import run_suite

FAULTS = [
    ({"quirks": {"wrong-version"}}, "KMS-MSG-001", "response"),  # V4 asked, 6.0 answered: undecodable as V4
    ({"quirks": {"bad-hash"}}, "KMS-MSG-002", "failed: mac"),
    ({"quirks": {"bad-hmac"}}, "KMS-MSG-002", "failed: hmac"),
    ({"quirks": {"wrong-cmid"}}, "KMS-MSG-003", "expected: CMID"),
    ({"quirks": {"wrong-time"}}, "KMS-MSG-003", "expected: request time"),
    ({"quirks": {"bad-epid"}}, "KMS-MSG-004", "LCID 9999"),
    ({"quirks": {"random-epid"}}, "KMS-MSG-005", "the same ePID twice"),
    ({"quirks": {"random-hwid"}}, "KMS-MSG-006", "the same HwId twice"),
    ({"quirks": {"accept-bad-version"}}, "KMS-MSG-007", "actual: a KMS response"),
    ({"quirks": {"pad-response"}}, "KMS-MSG-008", "response PDU of 200..312 bytes"),
    ({"quirks": {"reuse-request-iv"}}, "KMS-MSG-009", "a response IV different from the request IV"),
    ({"activation_interval": 60}, "KMS-TIME-001", "actual: 60 min"),
    ({"renewal_interval": 1440}, "KMS-TIME-002", "actual: 1440 min"),
    ({"quirks": {"ignore-time"}}, "KMS-TIME-003", "actual: an activation"),
    ({"time_tolerance": 3600}, "KMS-TIME-004", "0xC004F06C"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-002", "a valid activation after"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-003", "a valid activation after"),
    ({"quirks": {"crash-on-malformed"}}, "KMS-ROB-004", "a valid activation after"),
]


def _id(config: dict, clause: str) -> str:
    return f"{clause}-{'-'.join(sorted(map(str, config.get('quirks', config))))}"


@pytest.mark.parametrize("config,clause,message", FAULTS, ids=[_id(k, c) for k, c, _ in FAULTS])
def test_clause_fails_on_faulty_host(tmp_path, config, clause, message):
    config = dict(config)
    if "quirks" in config:
        config["quirks"] = frozenset(config["quirks"])
    records = run_suite(tmp_path, clauses=[clause], **config)
    assert records[clause]["verdict"] == "fail", records[clause]
    assert message in records[clause]["message"], records[clause]["message"]


def test_rob_001_fails_when_a_negative_check_kills_the_host(tmp_path):
    records = run_suite(tmp_path, clauses=["KMS-ROB-002", "KMS-ROB-001"], quirks=frozenset({"crash-on-malformed"}))
    assert records["KMS-ROB-001"]["verdict"] == "fail", records["KMS-ROB-001"]
    assert "a valid activation after" in records["KMS-ROB-001"]["message"], records["KMS-ROB-001"]["message"]


def test_rob_001_alone_sends_its_own_malformed_input(tmp_path):
    # selected without the other ROB checks, ROB-001 must still meet a host that saw bad input
    records = run_suite(tmp_path, clauses=["KMS-ROB-001"], quirks=frozenset({"crash-on-malformed"}))
    assert records["KMS-ROB-001"]["verdict"] == "fail", records["KMS-ROB-001"]
