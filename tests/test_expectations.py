"""--expect: declared deviations become expected failures; a stale one fails the run; a reason is mandatory."""

import json
import subprocess
import sys
from pathlib import Path

from conformance.reference.config import HostConfig
from conformance.reference.host import HostThread

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, expect_text: str, quirks=frozenset()) -> tuple[int, dict, str]:
    expect_file = tmp_path / "target.toml"
    expect_file.write_text(expect_text)
    summary = tmp_path / "summary.json"
    with HostThread(HostConfig(port=0, quirks=quirks)) as thread:
        host, port = thread.host.address
        proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance/suite/test_rpc.py"), "-q",
                               "-p", "no:cacheprovider", "--target", f"{host}:{port}", "--expect", str(expect_file),
                               "--summary", str(summary), "--clause", "KMS-RPC-008"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    verdicts = {r["clause"]: r["verdict"] for r in json.loads(summary.read_text())} if summary.exists() else {}
    return proc.returncode, verdicts, proc.stdout + proc.stderr


DECLARED = '[[deviation]]\nclause = "KMS-RPC-008"\ntext = "fault 0x1C010002"\nreason = "ignores opnum"\n'


def test_declared_failure_is_expected(tmp_path):
    code, verdicts, out = run(tmp_path, DECLARED, frozenset({"ignore-opnum"}))
    assert code == 0 and verdicts == {"KMS-RPC-008": "xfail"}, out


def test_stale_declaration_fails_the_run(tmp_path):
    code, verdicts, out = run(tmp_path, DECLARED)
    assert code == 1 and verdicts == {"KMS-RPC-008": "xpass"}, out


def test_failure_with_other_text_stays_a_failure(tmp_path):
    other = DECLARED.replace("fault 0x1C010002", "some other message")
    code, verdicts, out = run(tmp_path, other, frozenset({"ignore-opnum"}))
    assert code == 1 and verdicts == {"KMS-RPC-008": "fail"}, out


def test_reason_is_mandatory(tmp_path):
    code, _, out = run(tmp_path, '[[deviation]]\nclause = "KMS-RPC-008"\n')
    assert code == 4 and "no reason" in out
