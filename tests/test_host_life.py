"""The suite in charge of the host's life (--target-cmd): fresh starts, libfaketime's clock, deaths and restarts.

Every host here is a real process: the reference host, the crashing host of tests/crashing_host.py and a
faulty reference host (tests/faulty_host_process.py), each started by the suite or by the test itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.harness import clauses as clause_registry
from conformance.net.address import free_port
from conformance.process import faketime
from faulty import ROOT, SUITE, suite_records

HOST = f"{sys.executable} -m conformance.cli host --listen 127.0.0.1:{{port}}"
CRASHING = f"{sys.executable} {ROOT / 'tests' / 'crashing_host.py'} {{port}}"
# the proofs here: a host that aborts (ROB-006) and one that forgets its clients at a restart (ROB-007)
FAULTS = [("crashing_host.py --bugs auth3 / empty", "KMS-ROB-006"), ("kmsconf host without --db", "KMS-ROB-007"),
          ("crashing_host.py --bugs degrade-v4", "KMS-ROB-001")]
needs_faketime = pytest.mark.skipif(faketime.find_library() is None, reason=f"needs libfaketime: {faketime.INSTALL_HINT}")


def suite(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-p",
                           "no:randomly", "--summary", str(tmp_path / "summary.json"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def records(tmp_path: Path) -> dict[str, dict]:
    return {r["clause"]: r for r in json.loads((tmp_path / "summary.json").read_text())}


@needs_faketime
def test_reference_host_started_by_the_suite_judges_every_counting_clause(tmp_path):
    # the command: no --control, no {dir}; fresh starts empty its in-memory table, libfaketime moves it
    got = suite_records(tmp_path, ["--target-cmd", HOST], ["KMS-THR", "KMS-CACHE", "KMS-TIME"])
    counting = {c.id for c in clause_registry.load().values() if c.area in ("THR", "CACHE", "TIME")}
    assert {cid: r["verdict"] for cid, r in got.items() if cid in counting} == {cid: "pass" for cid in counting}


def test_the_same_without_a_means_skips_the_counting_clauses(tmp_path):
    # the control: a plain --target with no control channel cannot empty the table or move the clock
    with subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen",
                           f"127.0.0.1:{(port := free_port('127.0.0.1'))}", "--workers", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as host:
        try:
            host.stdout.readline()
            got = suite_records(tmp_path, ["--target", f"127.0.0.1:{port}"], ["KMS-THR-003", "KMS-CACHE-004"])
        finally:
            host.terminate()
    assert got["KMS-THR-003"]["verdict"] == got["KMS-CACHE-004"]["verdict"] == "skip"
    assert "--target-cmd" in got["KMS-THR-003"]["message"]


def test_a_restart_that_keeps_the_table_passes_and_one_that_forgets_warns(tmp_path):
    kept = suite_records(tmp_path / "kept", ["--target-cmd", f"{HOST} --db {{dir}}/host.sqlite"], ["KMS-ROB-007"])
    forgot = suite_records(tmp_path / "forgot", ["--target-cmd", HOST], ["KMS-ROB-007"])
    assert kept["KMS-ROB-007"]["verdict"] == "pass", kept["KMS-ROB-007"]
    assert forgot["KMS-ROB-007"]["verdict"] == "warn"
    assert forgot["KMS-ROB-007"]["actual"]["after SIGKILL"] == 1  # a known client counted as the first again


def test_a_crash_under_target_cmd_is_one_finding_and_the_run_goes_on(tmp_path):
    # the host aborts on an auth3 PDU (KMS-ROB-003 sends one): one KMS-ROB-006 failure naming the signal and the
    # exchange, the check run again on the restarted host, every other clause as on the same host without the bug
    clauses = ["KMS-RPC", "KMS-ROB-003", "KMS-ROB-006", "KMS-MSG-002"]
    crashed = suite_records(tmp_path / "bug", ["--target-cmd", f"{CRASHING} --bugs auth3"], clauses)
    sound = suite_records(tmp_path / "sound", ["--target-cmd", f"{CRASHING} --bugs none"], clauses)
    death = crashed["KMS-ROB-006"]
    assert death["verdict"] == "fail" and "SIGABRT" in death["actual"], death
    assert "during KMS-ROB-003" in death["message"] and "test_unknown_pdu_type[16]" in death["message"]
    assert "replay: kmsconf fuzz --replay" in death["detail"]
    pcap = death["detail"].split("pcap: ")[1].split(";")[0]
    assert Path(pcap).is_file()
    assert sound["KMS-ROB-006"]["verdict"] == "pass"
    assert {c: r["verdict"] for c, r in crashed.items() if c != "KMS-ROB-006"} == \
        {c: r["verdict"] for c, r in sound.items() if c != "KMS-ROB-006"}
    # the replay the finding names takes the host down the same way
    replay = death["detail"].split("replay: ")[1].split("; the host's output")[0]
    proc = subprocess.run(replay.replace("kmsconf ", f"{sys.executable} -m conformance.cli ", 1), shell=True,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "SIGABRT" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture
def crashing_host():
    """A crashing host the test starts itself, for a plain --target: (port, process)."""
    started = []

    def start(bugs: str) -> int:
        port = free_port("127.0.0.1")
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crashing_host.py"), str(port), "--bugs", bugs],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(proc)
        proc.stdout.readline()  # "crashing host listening on ..."
        return port

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_host_killed_by_the_reachability_probe_is_one_finding_not_a_wall(tmp_path, crashing_host):
    port = crashing_host("empty")  # aborts when a connection closes without a byte: the probe's connection
    proc = suite(tmp_path, "--target", f"127.0.0.1:{port}")
    got = records(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert got["KMS-ROB-006"]["verdict"] == "fail"
    assert "empty connection" in got["KMS-ROB-006"]["actual"]
    others = {cid: r for cid, r in got.items() if cid != "KMS-ROB-006"}
    assert {r["verdict"] for r in others.values()} == {"skip"}
    assert all("the host is down" in r["message"] or "fuzz" in r["message"] for r in others.values())
    assert "not a KMS host" not in proc.stderr and "is it a KMS host" not in proc.stderr
    assert proc.stdout.count("FAILED ") == 1  # one finding, not a column of failures


def test_a_host_that_dies_mid_run_behind_a_plain_target_names_the_check(tmp_path, crashing_host):
    port = crashing_host("auth3")
    proc = suite(tmp_path, "--target", f"127.0.0.1:{port}", "--clause", "KMS-RPC,KMS-ROB")
    got = records(tmp_path)
    assert proc.returncode == 1
    death = got["KMS-ROB-006"]
    assert death["verdict"] == "fail" and "during KMS-ROB-003 (test_unknown_pdu_type[16])" in death["message"]
    assert {r["verdict"] for cid, r in got.items() if cid.startswith("KMS-RPC")} == {"pass"}  # before it: judged
    after = [r for cid, r in got.items() if cid in ("KMS-ROB-001", "KMS-ROB-004")]
    assert after and all(r["verdict"] == "skip" and "the host is down" in r["message"] for r in after)


ELSEWHERE = f"sh -c 'exec {sys.executable} -m conformance.cli host --workers 1 --listen 127.0.0.1:$1' sh"


def test_a_host_left_serving_in_part_by_malformed_input_fails_only_rob_001(tmp_path, crashing_host):
    # alive and accepting, but after an unknown PDU type it drops every V4 request: the checks' own liveness
    # probes (V6) pass, the last look at every version the host served before does not
    degraded = suite_records(tmp_path / "bug", ["--target", f"127.0.0.1:{crashing_host('degrade-v4')}"])
    sound = suite_records(tmp_path / "sound", ["--target", f"127.0.0.1:{crashing_host('none')}"])
    broken = {cid for cid, r in degraded.items() if r["verdict"] in ("fail", "warn")}
    assert broken - {cid for cid, r in sound.items() if r["verdict"] in ("fail", "warn")} == {"KMS-ROB-001"}
    assert "V4 activation" in degraded["KMS-ROB-001"]["message"]
    assert {c: r["verdict"] for c, r in degraded.items() if c != "KMS-ROB-001"} == \
        {c: r["verdict"] for c, r in sound.items() if c != "KMS-ROB-001"}


@pytest.mark.parametrize("command, status, says", [
    (f"{sys.executable} -m conformance.cli host --listen 127.0.0.1:1688", 2, "put {port} where the target takes the port"),
    (f"{sys.executable} -c 'import sys; print(\"bad flag\"); sys.exit(2)' {{port}}", 3,
     "exited (exit status 2) before listening on 127.0.0.1:"),
    ("sleep 60 {port}", 3, "did not listen on 127.0.0.1:"),
    (ELSEWHERE + " PORT {port}", 3, "instead: put {port} where it takes its port"),
], ids=["no-port", "exits-at-once", "never-listens", "listens-elsewhere"])
def test_a_target_cmd_that_does_not_serve_is_one_line(tmp_path, command, status, says):
    command = command.replace("PORT", str(free_port("127.0.0.1")))
    proc = suite(tmp_path, "--target-cmd", command, "--target-timeout", "1", timeout=60)
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    if "bad flag" in command:
        assert "its last output: bad flag" in lines[0]


@needs_faketime
def test_a_host_that_escapes_libfaketime_is_never_judged_on_a_clock_that_did_not_move(tmp_path):
    got = suite_records(tmp_path, ["--target-cmd", f"env -u LD_PRELOAD {HOST}"], ["KMS-CACHE-004", "KMS-TIME-003"])
    assert got["KMS-CACHE-004"]["verdict"] == "inconclusive"
    assert "libfaketime is not mapped" in got["KMS-CACHE-004"]["message"]
    assert got["KMS-TIME-003"]["verdict"] == "pass"  # judged on the host's own clock; the moved variant skipped


def test_a_static_binary_is_named_as_out_of_libfaketimes_reach(tmp_path):
    source = tmp_path / "static.c"
    source.write_text("#include <unistd.h>\nint main(void) { pause(); return 0; }\n")
    built = subprocess.run(["gcc", "-static", "-o", str(tmp_path / "static"), str(source)], capture_output=True)
    if built.returncode != 0:
        pytest.skip(reason=f"no static C toolchain here: {built.stderr.decode()[-200:]}")
    library = faketime.find_library() or Path("/nonexistent/libfaketime.so.1")
    clock = faketime.FakeClock(library, tmp_path)
    proc = subprocess.Popen([str(tmp_path / "static")], env={**os.environ, **clock.environment(dict(os.environ))})
    try:
        time.sleep(0.2)
        assert "statically linked" in clock.reached([proc.pid])
    finally:
        proc.kill()
        proc.wait()


def test_no_host_is_left_running_after_ctrl_c(tmp_path):
    marker = tmp_path / "marker.sqlite"  # names this run's host among the machine's processes
    command = f"{HOST} --db {marker}"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:randomly",
                             "--summary", str(tmp_path / "summary.json"), "--target-cmd", command],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not _running(str(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(str(marker)), "the host never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _running(str(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(str(marker)), "an orphan host is still running"


def _running(text: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "conformance.cli host" in cmdline:
                return True
    return False

