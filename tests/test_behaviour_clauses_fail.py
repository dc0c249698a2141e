"""Counting and group verdicts on hosts unlike the embedded one: THR-001/002 judge hosts that already have
clients (no control channel) correctly, and a host with a narrower key group passes the group clauses.
(Each fault's own clauses, and only those: tests/test_fault_isolation.py.)"""

import json
import subprocess
import sys

import pytest

from conformance import catalog
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.service import KmsService
from faulty import ROOT, SUITE, host_thread, run_suite

CLIENT_VL = ["--host-key-group", "client-vl"]


def run_without_control(tmp_path, clauses: list[str], existing_clients: int, **config) -> dict[str, dict]:
    """Verdicts of a host that already serves `existing_clients` (N = 25) and offers no control channel."""
    summary = tmp_path / "summary.json"
    with host_thread(port=0, **config) as thread:
        host, port = thread.host.address
        edition = catalog.load().edition("Windows 10/11 Enterprise")
        for _ in range(existing_clients):
            assert activate(host, port, build_request(edition)).verified
        argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                "--target", f"{host}:{port}", "--summary", str(summary), "--clause", ",".join(clauses)]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert summary.exists(), f"no summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return {r["clause"]: r for r in json.loads(summary.read_text())}


def test_count_checks_work_on_a_host_that_already_has_clients(tmp_path):
    records = run_without_control(tmp_path, ["KMS-THR-001", "KMS-THR-002", "KMS-THR-003"], existing_clients=20)
    assert records["KMS-THR-001"]["verdict"] == "pass", records["KMS-THR-001"]
    assert records["KMS-THR-002"]["verdict"] == "pass", records["KMS-THR-002"]
    assert records["KMS-THR-003"]["verdict"] == "skip"  # needs the control channel, and says so
    assert "control" in records["KMS-THR-003"]["message"]


def test_count_checks_are_inconclusive_at_the_cap(tmp_path):
    records = run_without_control(tmp_path, ["KMS-THR-001", "KMS-THR-002"], existing_clients=60)  # count 50
    for cid in ("KMS-THR-001", "KMS-THR-002"):
        assert records[cid]["verdict"] == "inconclusive", records[cid]
        assert "cap" in records[cid]["message"], records[cid]


def test_count_faults_fail_without_control_too(tmp_path):
    records = run_without_control(tmp_path, ["KMS-THR-002"], existing_clients=20, quirks=frozenset({"count-repeats"}))
    assert records["KMS-THR-002"]["verdict"] == "fail", records["KMS-THR-002"]


@pytest.mark.parametrize("group,declared", [("client-vl", "client-vl"), ("server-a", "auto"), ("server-b", "server-b"),
                                            ("server-c", "auto"), ("windows-server-2016", "windows-server-2016"),
                                            ("ws2008r2-b", "server-b")])
def test_narrow_key_groups_pass_the_table_2_clauses(tmp_path, group, declared):
    records = run_suite(tmp_path, clauses=["KMS-GRP-001", "KMS-GRP-002", "KMS-GRP-003", "KMS-GRP-004"],
                        key_group=group, extra=["--host-key-group", declared])
    assert {r["verdict"] for r in records.values()} == {"pass"}, records


def test_declared_group_narrower_than_the_host_fails(tmp_path):
    # a server-b host declared as client-vl activates more than it should: GRP-001 must notice
    records = run_suite(tmp_path, clauses=["KMS-GRP-001"], key_group="server-b", extra=CLIENT_VL)
    assert records["KMS-GRP-001"]["verdict"] == "fail", records["KMS-GRP-001"]


def test_windows_7_host_carries_only_the_client_key():
    KmsService(HostConfig(key_group="client-vl", host_os="Windows 7"))
    with pytest.raises(ValueError, match="cannot carry"):
        KmsService(HostConfig(key_group="server-b", host_os="Windows 7"))


@pytest.mark.parametrize("quirks", [{"crash-on-malformed"}, set()], ids=["crash-on-malformed", "sound-host"])
def test_rob_001_alone_sends_its_own_malformed_input(tmp_path, quirks):
    # selected alone, no other check in the process has sent bad input: ROB-001 must send its own
    # (the run's negative_inputs == 0 branch), so a host that dies on it dies during ROB-001 (the
    # death is KMS-ROB-006's failure, ROB-001 not judged), and a sound one passes
    records = run_suite(tmp_path, clauses=["KMS-ROB-001"], quirks=frozenset(quirks))
    if quirks:
        assert records["KMS-ROB-006"]["verdict"] == "fail", records.get("KMS-ROB-006")
        assert "during KMS-ROB-001" in records["KMS-ROB-006"]["message"]
        assert records["KMS-ROB-001"]["verdict"] == "skip" and "not judged" in records["KMS-ROB-001"]["message"]
    else:
        assert records["KMS-ROB-001"]["verdict"] == "pass", records["KMS-ROB-001"]
