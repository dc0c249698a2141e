"""Each answer clause (KMS-CLI-010..014) fails for a client that trusts what it should check, and only that clause
(the embedded run passes the reference client on every one); without a way to read the client's result they skip,
saying so."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.harness.fixtures import reference_client_command
from faulty import broken_verdict
from test_client_clauses_fail import ROOT, run_client_suite

FAULTY = shlex.quote(str(Path(__file__).with_name("faulty_answer_client.py")))
REPORT = ("--client-activated", "activated: yes", "--client-rejected", r"verified\s*: NO")
ANSWER_CLAUSES = [f"KMS-CLI-0{i}" for i in range(10, 15)]
FAULTS = [
    ("trusts-echoes", "KMS-CLI-010"),
    ("trusts-integrity", "KMS-CLI-011"),
    ("trusts-xored-ivs", "KMS-CLI-012"),
    ("trusts-pid-size", "KMS-CLI-013"),
    ("activated-below-n", "KMS-CLI-014"),
]


def answer_verdicts(tmp_path, command: str, *extra: str) -> dict[str, dict]:
    return run_client_suite(tmp_path, command, "--clause", ",".join(ANSWER_CLAUSES), *extra)[1]


@pytest.mark.parametrize("fault,clause", FAULTS, ids=[f for f, _ in FAULTS])
def test_answer_clause_fails_for_a_trusting_client(tmp_path, fault, clause):
    records = answer_verdicts(tmp_path, f"{shlex.quote(sys.executable)} {FAULTY} {fault} {{host}}:{{port}}", *REPORT)
    verdicts = {c: r["verdict"] for c, r in records.items()}
    assert verdicts[clause] == broken_verdict(clause), records[clause]
    assert {c for c, v in verdicts.items() if v != "pass"} == {clause}, verdicts


def test_without_a_report_the_answer_clauses_skip_saying_how_to_give_one(tmp_path):
    records = answer_verdicts(tmp_path, reference_client_command())
    assert all(r["verdict"] == "skip" and "--client-exit-status" in r["message"] for r in records.values()), records


def test_a_report_given_two_ways_is_one_usage_error():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--client-cmd",
                           reference_client_command(), "--client-exit-status", "--client-activated", "yes"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--client-exit-status" in proc.stderr and "Traceback" not in proc.stderr
