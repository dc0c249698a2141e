"""Each KMS-RPC clause fails against a reference host misconfigured to break exactly that rule."""

import pytest

from faulty import run_suite

FAULTS = [
    ("accept-foreign-interface", "KMS-RPC-007"),
    ("ignore-opnum", "KMS-RPC-008"),
    ("no-call-id-echo", "KMS-RPC-006"),
    ("no-mpx-mirror", "KMS-RPC-004"),
    ("close-after-response", "KMS-RPC-011"),
    ("reject-ndr32", "KMS-RPC-001"),
    ("accept-all-syntaxes", "KMS-RPC-002"),
    ("zero-assoc-group", "KMS-RPC-003"),
    ("no-alter-context", "KMS-RPC-005"),
    ("process-unbound-context", "KMS-RPC-009"),
    ("bad-alloc-hint", "KMS-RPC-010"),
    ("require-mpx", "KMS-RPC-012"),
]


@pytest.mark.parametrize("quirk,clause", FAULTS, ids=[c for _, c in FAULTS])
def test_rpc_clause_fails_on_faulty_host(tmp_path, quirk, clause):
    records = run_suite(tmp_path, clauses=[clause], quirks=frozenset({quirk}))
    assert records[clause]["verdict"] == "fail", records[clause]
