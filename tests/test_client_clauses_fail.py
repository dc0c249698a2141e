"""Each KMS-CLI clause passes for the reference client and fails for a client that breaks it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.harness import clauses

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


def failed(verdicts: dict[str, str], clause: str) -> bool:
    """A broken MUST clause fails; a broken SHOULD clause warns."""
    return verdicts[clause] == ("warn" if clauses.get(clause).level == "SHOULD" else "fail")


def client_verdicts(tmp_path, command: str) -> dict[str, str]:
    summary = tmp_path / "summary.json"
    subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance/suite/test_client.py"), "-q",
                    "-p", "no:cacheprovider", "--client-cmd", command, "--summary", str(summary)],
                   cwd=ROOT, capture_output=True, text=True, timeout=120)
    return {r["clause"]: r["verdict"] for r in json.loads(summary.read_text())}


def test_reference_client_passes_every_client_clause(tmp_path):
    command = f"{sys.executable} -m conformance.cli activate {{host}}:{{port}} --product 'Windows 7 Enterprise'"
    verdicts = client_verdicts(tmp_path, command)
    assert len(verdicts) == 9 and set(verdicts.values()) == {"pass"}, verdicts


@pytest.mark.parametrize("fault,clause", FAULTS, ids=[f for f, _ in FAULTS])
def test_client_clause_fails_for_faulty_client(tmp_path, fault, clause):
    verdicts = client_verdicts(tmp_path, f"{sys.executable} {FAULTY} {fault} {{host}} {{port}}")
    assert failed(verdicts, clause), verdicts
    # the fault breaks its own clause; every other client clause still judges the requests and passes
    assert {c for c, v in verdicts.items() if v != "pass"} == {clause}, verdicts


def test_client_mode_names_the_client_and_keeps_evidence(tmp_path):
    summary, evidence = tmp_path / "summary.json", tmp_path / "evidence"
    command = f"{sys.executable} -m conformance.cli activate {{host}}:{{port}} --product 'Windows 7 Enterprise'"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--client-cmd", command,
                           "--summary", str(summary), "--evidence-dir", str(evidence)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    records = json.loads(summary.read_text())
    assert {r["target"] for r in records} == {f"client: {command}"}, records[0]
    assert f"KMS conformance: client: {command}" in proc.stdout
    assert len(list(evidence.glob("KMS-CLI-*.pcap"))) == 9 and all(r["evidence"] for r in records)


@pytest.mark.parametrize("command,clause,says", [
    ("true {host}:{port}", None, "the client exited with 0"),
    (f"{sys.executable} {FAULTY} version-7 {{host}} {{port}}", "KMS-CLI-002", "7.0"),
], ids=["sends-nothing", "version-7"])
def test_a_client_that_sends_nothing_or_an_unknown_version(tmp_path, command, clause, says):
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--client-cmd", command,
                           "--summary", str(summary)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    records = {r["clause"]: r for r in json.loads(summary.read_text())}
    assert proc.returncode == 1 and "Traceback" not in proc.stdout and "def client_run" not in proc.stdout
    if clause is None:
        assert all(r["verdict"] == "fail" and says in r["message"] for r in records.values()), records
    else:
        assert records[clause]["verdict"] == "fail" and says in str(records[clause]["actual"]), records[clause]
