"""Each KMS-RPC clause fails against a reference host misconfigured to break exactly that rule.

Each row also names a piece of the failure message, so a proof cannot pass on an unrelated failure.
"""

import pytest

from faulty import run_suite

FAULTS = [
    ("accept-foreign-interface", "KMS-RPC-007", "provider_rejection, reason 1"),
    ("ignore-opnum", "KMS-RPC-008", "fault 0x1C010002"),
    ("no-call-id-echo", "KMS-RPC-006", "call_id 0x1234"),
    ("no-mpx-mirror", "KMS-RPC-004", "actual: 0x13"),
    ("close-after-response", "KMS-RPC-011", "3 answered requests on one connection"),
    ("reject-ndr32", "KMS-RPC-001", "actual: [(2,"),
    ("accept-all-syntaxes", "KMS-RPC-002", "exactly one of NDR32/NDR64 accepted"),
    ("zero-assoc-group", "KMS-RPC-003", "non-zero assoc_group"),
    ("no-alter-context", "KMS-RPC-005", "expected: alter_context_resp"),
    ("process-unbound-context", "KMS-RPC-009", "fault 0x1C010003"),
    ("bad-alloc-hint", "KMS-RPC-010", "alloc_hint"),
    ("require-mpx", "KMS-RPC-012", "closed the connection"),  # the nomux bind is dropped
]


@pytest.mark.parametrize("quirk,clause,message", FAULTS, ids=[c for _, c, _ in FAULTS])
def test_rpc_clause_fails_on_faulty_host(tmp_path, quirk, clause, message):
    records = run_suite(tmp_path, clauses=[clause], quirks=frozenset({quirk}))
    assert records[clause]["verdict"] == "fail", records[clause]
    assert message in records[clause]["message"], records[clause]["message"]
