"""Each KMS-CLI clause passes for the reference client and fails for a client that breaks it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faulty import broken_verdict

ROOT = Path(__file__).resolve().parents[1]
FAULTY = Path(__file__).with_name("faulty_client.py")
FAULTS = [
    ("opnum", "KMS-CLI-001"),
    ("wrong-version", "KMS-CLI-002"),
    ("wrong-n", "KMS-CLI-003"),
    ("wrong-kms-id", "KMS-CLI-004"),
    ("zero-cmid", "KMS-CLI-005"),
    ("shared-cmid", "KMS-CLI-005"),
    ("old-time", "KMS-CLI-006"),
    ("bad-status", "KMS-CLI-007"),
    ("empty-workstation", "KMS-CLI-008"),
    ("bad-padding", "KMS-CLI-009"),
]


REQUEST_CLAUSES = {f"KMS-CLI-00{i}" for i in range(1, 10)}  # judged on the requests the client sent


def run_client_suite(tmp_path, command: str, *extra: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess,
                                                                                        dict[str, dict]]:
    """`pytest --client-cmd command` (with `extra` options), as a user runs it: client mode picks the client
    clauses from the whole suite. The process and its records by clause."""
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q",
                           "-p", "no:cacheprovider", "--client-cmd", command, "--summary", str(summary), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return proc, {r["clause"]: r for r in json.loads(summary.read_text())}


def client_verdicts(tmp_path, command: str) -> dict[str, str]:
    return {cid: r["verdict"] for cid, r in run_client_suite(tmp_path, command)[1].items()}


def test_reference_client_passes_names_the_client_and_keeps_evidence(tmp_path):
    # one run of the whole client suite serves both checks: every clause passes, and the report names the
    # client and keeps one capture per clause
    evidence = tmp_path / "evidence"
    command = f"{sys.executable} -m conformance.cli activate {{host}}:{{port}} --product 'Windows 7 Enterprise'"
    proc, records = run_client_suite(tmp_path, command, "--evidence-dir", str(evidence))
    verdicts = {cid: r["verdict"] for cid, r in records.items()}
    assert {c for c, v in verdicts.items() if v == "pass"} >= REQUEST_CLAUSES, verdicts
    assert set(verdicts.values()) <= {"pass", "skip"}, verdicts  # the answer and discovery clauses say what they need
    assert {r["target"] for r in records.values()} == {f"client: {command}"}, records
    assert f"KMS conformance: client: {command}" in proc.stdout
    assert len(list(evidence.glob("KMS-CLI-*.pcap"))) == 9 and all(records[c]["evidence"] for c in REQUEST_CLAUSES)


@pytest.mark.parametrize("fault,clause", FAULTS, ids=[f for f, _ in FAULTS])
def test_client_clause_fails_for_faulty_client(tmp_path, fault, clause):
    verdicts = client_verdicts(tmp_path, f"{sys.executable} {FAULTY} {fault} {{host}} {{port}}")
    assert verdicts[clause] == broken_verdict(clause), verdicts
    # the fault breaks its own clause; every other client clause still judges the requests and passes (or skips,
    # saying what it needs)
    assert {c for c, v in verdicts.items() if v not in ("pass", "skip")} == {clause}, verdicts


@pytest.mark.parametrize("command,clause,says", [
    ("true {host}:{port}", None, "the client exited with 0"),
    (f"{sys.executable} {FAULTY} version-7 {{host}} {{port}}", "KMS-CLI-002", "7.0"),
], ids=["sends-nothing", "version-7"])
def test_a_client_that_sends_nothing_or_an_unknown_version(tmp_path, command, clause, says):
    proc, records = run_client_suite(tmp_path, command)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout and "def client_run" not in proc.stdout
    if clause is None:
        assert all(records[c]["verdict"] == "fail" and says in records[c]["message"] for c in REQUEST_CLAUSES), records
    else:
        assert records[clause]["verdict"] == "fail" and says in str(records[clause]["actual"]), records[clause]
