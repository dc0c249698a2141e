"""--expect: a deviation matching the failure's actual outcome becomes an expected failure; a stale one fails
the run and says so; a reason is mandatory. Graded verdicts: a failed SHOULD clause warns (exit 0) unless
--strict."""

import json
import subprocess
import sys
from pathlib import Path

from conformance.faults.host import faulty_host_thread
from conformance.harness.expectations import load_expectations, shipped_profiles
from conformance.reference.host.config import HostConfig

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, clause: str, expect_text: str | None = None, quirks=frozenset(), extra=()) -> tuple[int, dict, str]:
    summary = tmp_path / "summary.json"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--summary", str(summary), "--clause", clause,
            *extra]
    if expect_text is not None:
        expect_file = tmp_path / "target.toml"
        expect_file.write_text(expect_text)
        argv += ["--expect", str(expect_file)]
    with faulty_host_thread(HostConfig(port=0), quirks) as thread:
        host, port = thread.host.address
        proc = subprocess.run(argv + ["--target", f"{host}:{port}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    records = {r["clause"]: r for r in json.loads(summary.read_text())} if summary.exists() else {}
    return proc.returncode, records, proc.stdout + proc.stderr


DECLARED = '[[deviation]]\nclause = "KMS-RPC-009"\nactual = "Response"\nreason = "serves unbound contexts"\n'


def test_declared_failure_is_expected_by_its_actual_outcome(tmp_path):
    code, records, out = run(tmp_path, "KMS-RPC-009", DECLARED, frozenset({"process-unbound-context"}))
    assert code == 0 and records["KMS-RPC-009"]["verdict"] == "xfail", out
    assert records["KMS-RPC-009"]["actual"] == "Response" and records["KMS-RPC-009"]["reason"]


def test_stale_declaration_fails_the_run_and_says_stale(tmp_path):
    code, records, out = run(tmp_path, "KMS-RPC-009", DECLARED)
    assert code == 1 and records["KMS-RPC-009"]["verdict"] == "xpass", out
    assert "stale" in records["KMS-RPC-009"]["message"]
    last = out.strip().splitlines()[-1]
    assert "stale" in last and "passed" in last, last  # the closing line says it, not a green "N passed"


def test_failure_with_another_actual_stays_a_failure(tmp_path):
    code, records, out = run(tmp_path, "KMS-RPC-009", DECLARED.replace('"Response"', '"Closed"'),
                             frozenset({"process-unbound-context"}))
    assert code == 1 and records["KMS-RPC-009"]["verdict"] == "fail", out
    assert records["KMS-RPC-009"]["expected"] == ["Fault(0x1C010003)"], records["KMS-RPC-009"]


def test_reason_is_mandatory_and_text_matching_is_refused(tmp_path):
    code, _, out = run(tmp_path, "KMS-RPC-009", '[[deviation]]\nclause = "KMS-RPC-009"\n')
    assert code == 2 and "no reason" in out and len(out.strip().splitlines()) == 1, out
    code, _, out = run(tmp_path, "KMS-RPC-009", DECLARED.replace("actual =", "text ="))
    assert code == 2 and "actual =" in out, out


def test_failed_should_clause_warns_and_exits_0_unless_strict(tmp_path):
    code, records, out = run(tmp_path, "KMS-RPC-008", quirks=frozenset({"ignore-opnum"}))
    assert code == 0 and records["KMS-RPC-008"]["verdict"] == "warn", out
    assert "WARN" in out and "warn" in out.strip().splitlines()[-1], out
    code, records, out = run(tmp_path, "KMS-RPC-008", quirks=frozenset({"ignore-opnum"}), extra=["--strict"])
    assert code == 1 and records["KMS-RPC-008"]["verdict"] == "fail", out


def test_shipped_profiles_are_named_and_declare_actuals():
    assert {"vlmcsd", "pykms"} <= set(shipped_profiles())
    for name in shipped_profiles():
        for deviation in load_expectations(name).values():
            assert deviation.actual and deviation.reason, (name, deviation)
