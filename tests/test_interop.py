"""Against the third-party hosts, built outside this project (`interop`; skipped unless VLMCSD names a vlmcsd and
PYKMS a py-kms checkout): a run against vlmcsd fits a screen and its Allure page counts what summary.json does,
one against py-kms with its declared deviations passes (its time recorded, not asserted)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.net.address import free_port

pytestmark = pytest.mark.interop


def started(argv: list[str], port: int, cwd: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{argv[0]} did not listen on 127.0.0.1:{port}")


def suite(tmp_path: Path, port: int, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started_at = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", f"127.0.0.1:{port}",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return proc, time.monotonic() - started_at


def test_a_run_against_vlmcsd_fits_in_150_lines(tmp_path):
    vlmcsd = os.environ.get("VLMCSD")
    if not vlmcsd:
        pytest.skip(reason="set VLMCSD to a vlmcsd you built")
    port = free_port()
    host = started([vlmcsd, "-D", "-e", "-L", f"127.0.0.1:{port}"], port)
    try:
        plain, _ = suite(tmp_path, port, "-ra")
        declared, _ = suite(tmp_path, port, "-ra", "--expect", "vlmcsd", "--profile", "emulator")
    finally:
        host.terminate()
        host.wait(10)
    assert plain.returncode == 1 and len(plain.stdout.splitlines()) <= 150, plain.stdout
    assert re.search(r"FAIL +KMS-GRP-003: expected: Refusal\(0xC004F042\) actual: ", plain.stdout), plain.stdout
    assert declared.returncode == 0 and len(declared.stdout.splitlines()) <= 150, declared.stdout


def test_py_kms_with_its_deviations_passes(tmp_path, record_property):
    checkout = os.environ.get("PYKMS")
    if not checkout:
        pytest.skip(reason="set PYKMS to a py-kms checkout's py-kms directory (PYKMS_PYTHON: its interpreter)")
    port = free_port()
    python = os.environ.get("PYKMS_PYTHON", sys.executable)
    host = started([python, "pykms_Server.py", "127.0.0.1", str(port), "-V", "INFO", "-F", "STDOUT"], port,
                   cwd=checkout)
    try:
        proc, seconds = suite(tmp_path, port, "--expect", "pykms")
    finally:
        host.terminate()
        host.wait(10)
    assert proc.returncode == 0, proc.stdout[-3000:]
    record_property("seconds", round(seconds, 1))  # speed is measured (make bench), never asserted


def test_the_report_of_a_vlmcsd_run_counts_each_verdict_as_summary_json_does(tmp_path):
    from collections import Counter

    from test_report_browser import ALLURE, CHROMIUM, rendered

    from conformance.harness.allure_labels import STATUS

    vlmcsd = os.environ.get("VLMCSD")
    if not vlmcsd or CHROMIUM is None or not ALLURE.exists():
        pytest.skip(reason="set VLMCSD to a vlmcsd you built (and make setup: Chromium, the Allure CLI)")
    port = free_port()
    host = started([vlmcsd, "-D", "-e", "-L", f"127.0.0.1:{port}"], port)
    try:
        subprocess.run([sys.executable, "-m", "conformance.cli", "report", "--target", f"127.0.0.1:{port}",
                        "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report")],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, timeout=600)
    finally:
        host.terminate()
        host.wait(10)
    checks = [c for r in json.loads((tmp_path / "summary.json").read_text()) for c in r["checks"]]
    home = rendered(tmp_path / "report" / "index.html")["home"]
    shown = {name.lower(): int(n) for name, n in re.findall(r"^(Failed|Broken|Passed|Skipped|Unknown) (\d+)$",
                                                              home, re.M)}
    assert shown == dict(Counter(STATUS[c["verdict"]] for c in checks)), shown
