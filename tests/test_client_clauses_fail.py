"""Each KMS-CLI clause passes for the reference client and fails for a client that breaks it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert verdicts[clause] == "fail", verdicts
