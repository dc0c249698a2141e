"""Every mistake is one line with the right exit status, read-only commands never write, and the plain-text
outputs say what they print (issue: every mistake one line, every report names its target)."""

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.faults.host import faulty_host_thread
from conformance.net.address import free_port
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=120, cwd=ROOT, env=None):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def one_line(proc, code: int, says: str) -> None:
    out = (proc.stderr + proc.stdout).strip()
    assert proc.returncode == code, (proc.returncode, out[-1500:])
    assert says in out, out[-1500:]
    assert len(proc.stderr.strip().splitlines()) == 1 and len(proc.stdout.strip().splitlines()) <= 1, out[-1500:]


@pytest.mark.parametrize("args,code,says", [
    (["--target", "127.0.0.1:99999"], 2, "outside 0..65535"),
    (["--target", "::1"], 2, "[::1]:1688"),
    (["--target", "127.0.0.1:{closed}"], 3, "cannot connect"),
    (["--target", "{host}", "--control", "127.0.0.1:{closed}"], 2, "no control channel answers"),
    (["--dns-domain", "example.test"], 2, "--dns-server"),
    (["--client-cmd", "/nonexistent/vlmcs {{host}}:{{port}}"], 2, "not an executable"),
    (["--expect", "nosuchprofile"], 2, "shipped: pykms, vlmcsd"),
    (["--host-key-group", "server-z"], 2, "--host-key-group server-z"),
], ids=["bad-port", "bare-v6", "closed-target", "closed-control", "dns-without-server", "no-client", "no-profile",
        "no-key-group"])
def test_suite_option_mistakes(args, code, says):
    with HostThread(HostConfig(port=0)) as thread:
        host = "{}:{}".format(*thread.host.address)
        args = [a.format(closed=free_port(), host=host) for a in args]
        proc = run("-m", "pytest", "conformance/suite", "-p", "no:cacheprovider", *args)
    one_line(proc, code, says)
    assert "_pytest" not in proc.stderr


def test_kmsconf_check_closed_port_is_one_line():
    one_line(run("-m", "conformance.cli", "check", "--target", f"127.0.0.1:{free_port()}"), 3, "cannot connect")


def test_matrix_with_an_unreachable_target_fails(tmp_path):
    proc = run("-m", "conformance.cli", "matrix", "--target", f"ref=127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert proc.returncode == 3 and "cannot connect" in proc.stderr, proc.stdout + proc.stderr


def test_clauses_of_an_unknown_area():
    proc = run("-m", "conformance.cli", "clauses", "--area", "FOO")
    one_line(proc, 2, "RPC, MSG")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def not_sqlite(path: Path) -> None:
    path.write_text("not a database\n" * 100)


def unrelated_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.execute("INSERT INTO recipes VALUES ('bread')")
    db.close()


@pytest.mark.parametrize("make", [not_sqlite, unrelated_sqlite], ids=["not-sqlite", "unrelated-sqlite"])
def test_host_status_on_a_foreign_file_says_so_and_changes_nothing(tmp_path, make):
    path = tmp_path / "their.file"
    make(path)
    before = file_digest(path)
    proc = run("-m", "conformance.cli", "host-status", "--db", str(path))
    one_line(proc, 2, "not a kmsconf host database")
    assert file_digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["their.file"]


def test_host_status_reads_a_host_database_without_writing_it(tmp_path):
    db = tmp_path / "host.sqlite"
    with HostThread(HostConfig(port=0, db=str(db))) as thread:
        host, port = thread.host.address
        assert run("-m", "conformance.cli", "activate", f"{host}:{port}", "--product", "Windows 7 Enterprise",
                   "--workstation", "pc-17.corp.test").returncode == 0
    before = file_digest(db)
    proc = run("-m", "conformance.cli", "host-status", "--db", str(db))
    assert proc.returncode == 0 and re.search(r"count\s+: 1", proc.stdout), proc.stdout
    # the last requests as the event log shows them: event 12290, the client's name and its own time stamp
    assert re.search(r"12290 0x00000000 from pc-17\.corp\.test \(CMID [0-9a-f-]+, client time 20", proc.stdout), \
        proc.stdout
    assert file_digest(db) == before


def test_replay_of_an_old_capture_suggests_refresh():
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        proc = run("-m", "conformance.cli", "replay", "captures/reference/v6_multi3_sameconn.pcap",
                   "--target", f"{host}:{port}")
    assert proc.returncode == 1 and "--refresh" in proc.stdout and "0xC004F06C" in proc.stdout, proc.stdout


def test_simulate_says_what_it_prints_counts_once_and_sums_renewals():
    proc = run("-m", "conformance.cli", "simulate", "--clients", "30", "--servers", "6", "--days", "200")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and "changes of state" in lines[1]
    events = [line for line in lines if line.startswith("day ")]
    assert events and all(line.count("count") <= 1 for line in events), events[:3]
    assert any(re.match(r"renewals: \d+ succeeded, by 36 of 36 machines, each about every 7\.\d days", line)
               for line in lines), lines[-3:]


def test_decode_names_the_editions():
    proc = run("-m", "conformance.cli", "decode", "captures/reference/v6_ws2019dc_ndr64.pcap")
    assert "Windows Server 2019 Datacenter" in proc.stdout and "Windows Server 2019" in proc.stdout, proc.stdout


def test_a_failure_in_the_terminal_is_a_few_lines_and_its_exchange_with_v(tmp_path):
    """By default: the rule, expected/actual, one decoded exchange and where the pcap is; -v adds every decoded
    exchange and the bytes."""
    with faulty_host_thread(HostConfig(port=0), {"wrong-cmid"}) as thread:
        host, port = thread.host.address
        short, verbose = (run("-m", "pytest", "-p", "no:cacheprovider", "--target", f"{host}:{port}", "--clause",
                              "KMS-MSG-003", "--protocol", "6", *more, cwd=tmp_path)
                          for more in ([], ["-v"]))
    for proc in (short, verbose):
        assert proc.returncode == 1
        assert "KMS-MSG-003 (MUST) the response echoes the request's CMID and request time" in proc.stdout
    out = short.stdout
    failure = out[out.index("KMS-MSG-003 (MUST)"):out.index("short test summary")]
    assert "expected: " in failure and "actual: " in failure and "bytes:" not in failure, failure
    exchange = next(line for line in failure.splitlines() if line.startswith("  exchange "))
    assert "request V6.0 sku" in exchange and "response V6.0 count" in exchange, failure
    pcap = re.search(r"evidence: (\S+\.pcap)", failure).group(1)
    assert (tmp_path / pcap).is_file(), failure
    assert len(failure.splitlines()) <= 8, failure
    out = verbose.stdout
    decoded = out[out.index("decoded:"):out.index("bytes:")]
    assert "response V6.0 count" in decoded and "request V6.0 sku" in decoded, decoded


def test_a_failure_that_names_no_transcript_shows_the_checks_own_exchanges(tmp_path):
    """KMS-CACHE-001 judges a list of counts and passes expect() no transcript: the failure shows the exchanges the
    check made."""
    with faulty_host_thread(HostConfig(port=0, control=True), {"cache-size-50"}) as thread:
        host, port = thread.host.address
        ctl_host, ctl_port = thread.host.control_address
        proc = run("-m", "pytest", "-p", "no:cacheprovider", "--target", f"{host}:{port}", "--control",
                   f"{ctl_host}:{ctl_port}", "--clause", "KMS-CACHE-001", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:]
    out = proc.stdout
    failure = out[out.index("KMS-CACHE-001 (MUST)"):out.index("short test summary")]
    exchange = next((line for line in failure.splitlines() if line.startswith("  exchange ")), None)
    assert exchange is not None and "response V" in exchange and "more: -v" in exchange, failure


def test_a_run_against_a_host_with_many_faults_fits_a_screen(tmp_path):
    """Skips one line per reason, failures a few lines each: vlmcsd's deviations and more in at most 150 lines."""
    quirks = {"ignore-opnum", "ignore-key-group", "ignore-time", "fixed-count", "epid-names-other-key",
              "answer-short-payload", "close-after-response"}
    with faulty_host_thread(HostConfig(port=0), quirks) as thread:
        # a person's terminal: on a CI system (CI set) pytest prints each failure's whole message in its summary too
        terminal = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
        proc = run("-m", "pytest", "-p", "no:cacheprovider", "-ra", "--target", "{}:{}".format(*thread.host.address),
                   cwd=tmp_path, env=terminal)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) <= 150, "\n".join(lines)
    assert not any(line.startswith("SKIPPED") for line in lines), "skips are our grouped lines"
    skips = lines[lines.index(next(l for l in lines if l.startswith("skipped: "))) + 1:]
    assert any("KMS-CLI-001..014: client conformance checks need" in line for line in skips), skips
    assert lines[-2].startswith("summary written to"), lines[-5:]


def test_a_port_with_another_service_is_one_line(tmp_path):
    """A wrong port on an HTTP server: one line at once, not a hundred checks waiting out its silence."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = run("-m", "pytest", "conformance/suite", "-p", "no:cacheprovider", "--target",
                   f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    one_line(proc, 3, "a DCE/RPC bind got")


@pytest.mark.parametrize("args,says", [(["--protocol", "7"], "--protocol 7"), (["--profile", "msft"], "--profile"),
                                       (["--evidence-dir", "README.md"], "--evidence-dir")])
def test_other_option_mistakes_are_one_line(args, says):
    one_line(run("-m", "pytest", "conformance/suite", "-p", "no:cacheprovider", *args), 2, says)


def test_matrix_of_two_hosts_shows_every_verdict_and_fails_on_a_must(tmp_path):
    with faulty_host_thread(HostConfig(port=0), {"ignore-opnum"}) as warned, \
            faulty_host_thread(HostConfig(port=0), {"wrong-cmid"}) as failed:
        a, b = ("{}:{}".format(*t.host.address) for t in (warned, failed))
        proc = run("-m", "conformance.cli", "matrix", "--target", f"warned={a}", "--target", f"failed={b}",
                   "--out", str(tmp_path), timeout=600)
    page = (tmp_path / "index.html").read_text()
    assert proc.returncode == 1 and "a clause failed" in proc.stdout and "failed" in proc.stdout.splitlines()[-1]
    assert ">WARN<" in page and ">FAIL<" in page, proc.stdout
    duplicate = run("-m", "conformance.cli", "matrix", "--target", f"x={a}", "--target", f"x={b}")
    one_line(duplicate, 2, "is taken")


def test_the_tour_s_host_database_is_ignored_by_git():
    names = ["host.sqlite", "host.sqlite-wal", "host.sqlite-shm"]
    proc = subprocess.run(["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == names, proc.stdout + proc.stderr
