"""Each KMS-RPC clause fails against a reference host misconfigured to break exactly that rule."""

import pytest

from faulty import run_suite

FAULTS = [
    ("accept-foreign-interface", "KMS-RPC-007"),
    ("ignore-opnum", "KMS-RPC-008"),
    ("no-call-id-echo", "KMS-RPC-006"),
    ("no-mpx-mirror", "KMS-RPC-004"),
    ("close-after-response", "KMS-RPC-011"),
]


@pytest.mark.parametrize("quirk,clause", FAULTS, ids=[c for _, c in FAULTS])
def test_rpc_clause_fails_on_faulty_host(tmp_path, quirk, clause):
    records = run_suite(tmp_path, clauses=[clause], quirks=frozenset({quirk}))
    assert records[clause]["verdict"] == "fail", records[clause]
