"""A slow host is quick to judge and says what the run waits for: Table 1's probes go at once once KMS-MSG-010 has
passed, one at a time otherwise, with a progress line either way (the host behind a forward that delays answers)."""

import re
import subprocess
import sys
from pathlib import Path

from forwarder import Forwarder

from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

ROOT = Path(__file__).resolve().parents[1]
DELAY = 0.1  # seconds added to every answer


def suite(address, clauses: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", address, "--clause",
                           clauses, "--summary", str(tmp_path / f"{clauses}.json"), "--durations", "3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def phase(proc: subprocess.CompletedProcess) -> tuple[str, float]:
    """How the probe phase went (at once or one at a time), and in how long, as its progress line says."""
    match = re.search(r"Table 1 and every KMS id: all (\d+) in ([\d.]+) s \(([^;]+);", proc.stdout)
    assert match, proc.stdout[-3000:]
    return match.group(3), float(match.group(2))


def probing(proc: subprocess.CompletedProcess) -> float:
    """Seconds the probes took: the setup of the first check that needs them (pytest's --durations)."""
    return float(re.search(r"^([\d.]+)s setup +test_groups.py::test_table_2_matrix$", proc.stdout, re.M).group(1))


def test_table_1_goes_at_once_only_after_simultaneous_clients_passed(tmp_path):
    with HostThread(HostConfig(port=0)) as thread, Forwarder(thread.host.address, delay=DELAY) as slow:
        address = "{}:{}".format(*slow.address)
        alone = suite(address, "KMS-GRP-001", tmp_path)
        after = suite(address, "KMS-MSG-010,KMS-GRP-001", tmp_path)
    assert alone.returncode == 0 and after.returncode == 0, after.stdout[-3000:]
    how, serial = phase(alone)
    assert how == "one at a time" and "the host answers in 0." in alone.stdout, alone.stdout[-3000:]
    assert "one at a time" not in after.stdout and probing(after) < serial / 3, (serial, after.stdout[-3000:])
