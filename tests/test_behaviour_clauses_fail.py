"""Each KMS-THR, KMS-CACHE and KMS-GRP clause fails against a reference host broken to violate it,
and a host with a narrower key group passes the group clauses."""

import pytest

from conformance.reference.config import HostConfig
from conformance.reference.service import KmsService
from faulty import run_suite

FAULTS = [
    ({"quirks": {"fixed-count"}, "fixed_count": 3}, "KMS-THR-001", []),
    ({"quirks": {"count-repeats"}}, "KMS-THR-002", []),
    ({"quirks": {"fixed-count"}, "fixed_count": 1}, "KMS-THR-003", []),
    ({"quirks": {"fixed-count"}, "fixed_count": 30}, "KMS-THR-004", []),
    ({"quirks": {"fixed-count"}, "fixed_count": 10}, "KMS-CACHE-001", []),
    ({"quirks": {"fixed-count"}, "fixed_count": 10}, "KMS-CACHE-002", []),
    ({"quirks": {"shrink-cache"}}, "KMS-CACHE-003", []),
    ({"quirks": {"no-expiry"}}, "KMS-CACHE-004", []),
    ({"quirks": {"no-renewal-replace"}}, "KMS-CACHE-005", []),
    ({"quirks": {"ignore-key-group"}, "key_group": "client-vl"}, "KMS-GRP-001", ["--host-key-group", "client-vl"]),
    ({"quirks": {"non-cumulative-groups"}, "key_group": "server-b"}, "KMS-GRP-002", []),
    ({"quirks": {"ignore-key-group"}}, "KMS-GRP-003", []),
]


@pytest.mark.parametrize("config,clause,extra", FAULTS, ids=[c for _, c, _ in FAULTS])
def test_clause_fails_on_faulty_host(tmp_path, config, clause, extra):
    config = dict(config, quirks=frozenset(config["quirks"]))
    records = run_suite(tmp_path, clauses=[clause], extra=extra, **config)
    assert records[clause]["verdict"] == "fail", records[clause]


@pytest.mark.parametrize("group,declared", [("client-vl", "client-vl"), ("server-a", "auto"), ("server-b", "server-b"),
                                            ("server-c", "auto")])
def test_narrow_key_groups_pass_the_table_2_clauses(tmp_path, group, declared):
    records = run_suite(tmp_path, clauses=["KMS-GRP-001", "KMS-GRP-002", "KMS-GRP-003"], key_group=group,
                        extra=["--host-key-group", declared])
    assert {r["verdict"] for r in records.values()} == {"pass"}, records


def test_windows_7_host_carries_only_the_client_key():
    KmsService(HostConfig(key_group="client-vl", host_os="Windows 7"))
    with pytest.raises(ValueError, match="cannot carry"):
        KmsService(HostConfig(key_group="server-b", host_os="Windows 7"))
