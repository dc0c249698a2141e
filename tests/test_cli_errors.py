"""User mistakes get one clear line and an exit status, never a Python traceback."""

import subprocess
import sys

import pytest

from conformance.pcap.writer import write_pcap


def kmsconf(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


@pytest.fixture(scope="module")
def no_kms_pcap(tmp_path_factory):
    path = tmp_path_factory.mktemp("pcap") / "http.pcap"
    return write_pcap(path, [[("client", b"GET / HTTP/1.0\r\n\r\n"), ("host", b"HTTP/1.0 200 OK\r\n\r\n")]],
                      host=("127.0.0.1", 80))


@pytest.mark.parametrize("args,code,says", [
    (["activate", "127.0.0.1:notaport", "--product", "Windows 7 Enterprise"], 2, "not a number"),
    (["activate", "127.0.0.1:70000", "--product", "Windows 7 Enterprise"], 2, "outside 0..65535"),
    (["activate", "127.0.0.1:1", "--product", "Windows 7 Enterprise", "--timeout", "2"], 3, "cannot reach"),
    (["activate", "127.0.0.1:1", "--product", "Windows 7 Enterprize"], 2, "did you mean"),
    (["activate", "127.0.0.1:1", "--gvlk", "NOT-A-KEY"], 2, "not a product key"),
    (["activate", "--product", "Windows 7 Enterprise"], 2, "--discover"),
    (["decode", "/nonexistent/file.pcap"], 2, "no such file"),
    (["decode", "README.md"], 2, "not a pcap"),
    (["replay", "README.md", "--target", "127.0.0.1:1"], 2, "not a pcap"),
    (["fuzz", "--target", "127.0.0.1:1", "--runs", "3", "--timeout", "2"], 3, "cannot reach"),
    (["replay", "captures/reference/v6_multi3_sameconn.pcap", "--target", "127.0.0.1:1"], 3, "cannot reach"),
    (["fuzz", "--target", "127.0.0.1:1", "--runs", "0"], 2, "--runs must be at least 1"),
    (["fuzz-merge", "out.json", "/nonexistent/fuzz-campaign.json"], 2, "not a campaign report"),
    (["host", "--listen", "127.0.0.1:0", "--key-group", "server-z"], 2, "no host key"),
    (["host", "--listen", "127.0.0.1:0", "--activation-interval", "5"], 2, "outside 15..43200"),
    (["host", "--listen", "192.0.2.1:0"], 2, "cannot listen"),
    (["host-status", "--db", "/nonexistent/host.sqlite"], 2, "no host database"),
    (["matrix", "--target", "nonsense"], 2, "NAME=HOST:PORT"),
    (["simulate", "--days", "0"], 2, "--days > 0"),
    (["simulate", "--host-down", "soon"], 2, "FROM:TO"),
    (["check", "--target", "127.0.0.1:1"], 3, "cannot connect"),
])
def test_mistake_gets_a_clear_line(args, code, says):
    proc = kmsconf(*args)
    assert proc.returncode == code, (proc.returncode, proc.stdout[-500:], proc.stderr[-500:])
    assert says in proc.stderr + proc.stdout


def test_capture_without_kms_traffic(no_kms_pcap):
    proc = kmsconf("decode", str(no_kms_pcap))
    assert proc.returncode == 2 and "no KMS traffic" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
