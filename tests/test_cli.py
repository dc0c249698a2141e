"""`kmsconf` as a user runs it: decode, activate, clauses, host (a real process), host-status, bad input."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import catalog
from conformance.cli import main as kmsconf
from conformance.net.runner import BindOptions
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

REPO = Path(__file__).resolve().parents[1]
THIRD_PARTY = Path(__file__).resolve().parents[2] / "shared" / "captures" / "third-party"
WIN7, WIN8, WS2019 = "Windows 7 Enterprise", "Windows 8 Enterprise", "Windows Server 2019 Datacenter"
PRODUCTS = {4: WIN7, 5: WIN8, 6: WS2019}

REQUEST_KEYS = {"version", "vm", "license_status", "binding_expiration", "app_id", "sku_id", "kms_id", "cmid",
                "previous_cmid", "request_time", "workstation", "n_policy"}
RESPONSE_KEYS = {"version", "epid", "cmid", "request_time", "count", "activation_interval", "renewal_interval",
                 "verified"}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = kmsconf(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith(f"kmsconf {command}: "), lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def host():
    with HostThread(HostConfig(host="127.0.0.1", port=0)) as thread:
        yield thread.host.address[1]


# --- decode ---

@pytest.fixture(scope="module")
def own_capture(tmp_path_factory, host):
    """V4 (NDR32), V5 (NDR64), V6 (NDR64) and V6 (alter_context to NDR32) against the reference host, as a pcap."""
    from conformance.pcap.writer import write_pcap

    editions = catalog.load()
    runs = [(WIN7, BindOptions(ndr64=False)), (WIN8, BindOptions()), (WS2019, BindOptions()),
            (WS2019, BindOptions(prefer_ndr64=False))]
    results = []
    for n, (product, options) in enumerate(runs):
        request = build_request(editions.edition(product), workstation=f"ws{n}.cli.test")
        result = activate("127.0.0.1", host, request, options)
        assert result.verified, result.problems
        results.append(result)
    path = write_pcap(tmp_path_factory.mktemp("cli") / "own.pcap", [r.transcript for r in results],
                      host=("127.0.0.1", 1688))
    return path, results


def check_shape(item: dict) -> None:
    request, response = item["request"], item["response"]
    assert REQUEST_KEYS <= set(request), REQUEST_KEYS - set(request)
    assert RESPONSE_KEYS <= set(response), RESPONSE_KEYS - set(response)
    assert re.fullmatch(r"[456]\.0", request["version"]) and request["version"] == response["version"]
    for key in ("app_id", "sku_id", "kms_id", "cmid", "previous_cmid"):
        assert GUID.match(request[key]), (key, request[key])
    assert GUID.match(response["cmid"])
    assert ISO_UTC.match(request["request_time"]) and ISO_UTC.match(response["request_time"])
    for key in ("vm", "license_status", "binding_expiration", "n_policy"):
        assert isinstance(request[key], int), key
    for key in ("count", "activation_interval", "renewal_interval"):
        assert isinstance(response[key], int), key
    assert isinstance(request["workstation"], str) and isinstance(response["epid"], str)
    assert isinstance(response["verified"], bool)
    if request["version"] == "6.0":
        assert re.fullmatch(r"[0-9A-F]{16}", response["hwid"])
    else:
        assert "hwid" not in response


def test_decode_json_of_own_capture(capsys, own_capture):
    path, results = own_capture
    code, out, err = run(capsys, "decode", str(path), "--json")
    assert code == 0 and err == ""
    items = json.loads(out)
    assert isinstance(items, list) and len(items) == len(results)
    for item, result in zip(items, results):
        check_shape(item)
        request, response = item["request"], item["response"]
        sent, got = result.request, result.response.response
        assert request["version"] == f"{sent.major}.0"
        assert request["cmid"] == response["cmid"] == str(sent.cmid)
        assert request["sku_id"] == str(sent.sku_id) and request["kms_id"] == str(sent.kms_id)
        assert request["workstation"] == sent.workstation and request["n_policy"] == sent.n_policy
        assert request["request_time"] == response["request_time"]
        assert response["epid"] == got.epid and response["count"] == got.count
        assert (response["activation_interval"], response["renewal_interval"]) == (120, 10080)
        assert response["verified"] is True
        if sent.major == 6:
            assert response["hwid"] == result.response.hwid.hex().upper()
    assert [item["ndr"] for item in items] == [32, 64, 64, 32]


def test_decode_text_of_own_capture(capsys, own_capture):
    path, results = own_capture
    code, out, err = run(capsys, "decode", str(path), "--port", "1688")
    assert code == 0 and err == ""
    assert out.count("== exchange ") == len(results)
    assert "error:" not in out
    assert out.count("verified             True") == len(results)


def test_decode_json_of_a_third_party_capture(capsys):
    path = THIRD_PARTY / "vlmcsd_v6_ws2019dc_default.pcap"
    if not path.is_file():
        pytest.skip(reason=f"../shared/captures/third-party not present: {path}")
    code, out, _ = run(capsys, "decode", str(path), "--json")
    assert code == 0
    [item] = json.loads(out)
    check_shape(item)
    assert {k: item["request"][k] for k in ("version", "vm", "license_status", "binding_expiration", "workstation",
                                            "n_policy", "request_time", "cmid")} == {
        "version": "6.0", "vm": 0, "license_status": 2, "binding_expiration": 43200, "workstation": "www.adobe.fr",
        "n_policy": 5, "request_time": "2026-11-25T06:11:10Z", "cmid": "b099995c-a0ac-4381-bf46-0be6bcfda915"}
    assert item["response"]["epid"] == "06401-00206-562-389532-03-15361-9600.0000-3612019"
    assert item["response"]["hwid"] == "3A1C049600B60076"
    assert (item["response"]["count"], item["response"]["verified"]) == (10, True)


def test_decode_of_a_non_pcap_file_exits_2_with_one_line(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a capture\n" * 10)
    code, out, err = run(capsys, "decode", str(path))
    assert code == 2 and out == ""
    assert "not a pcap" in one_line_error(err, "decode")


def test_decode_of_a_missing_file_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "decode", str(tmp_path / "absent.pcap"))
    assert code == 2
    assert "no such file" in one_line_error(err, "decode")


def test_decode_of_a_pcap_without_kms_traffic_exits_2(capsys, tmp_path):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path = tmp_path / "web.pcap"
    wrpcap(str(path), [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=50000, dport=80, flags="S", seq=1),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=50000, dport=80, flags="PA", seq=2)
        / b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        Ether() / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(sport=5353, dport=53) / b"\x00" * 12,
    ])
    code, out, err = run(capsys, "decode", str(path))
    assert code == 2 and out == ""
    assert "no KMS traffic" in one_line_error(err, "decode")


def test_decode_with_a_port_that_has_no_kms_traffic_exits_2(capsys, own_capture):
    path, _ = own_capture
    code, _, err = run(capsys, "decode", str(path), "--port", "9")
    assert code == 2
    assert "on port 9" in one_line_error(err, "decode")


# --- activate ---

@pytest.mark.parametrize("major", [4, 5, 6])
@pytest.mark.parametrize("ndr", ["32", "64"])
def test_activate_each_version_and_transfer_syntax(capsys, host, major, ndr):
    protocol = major
    code, out, err = run(capsys, "activate", f"127.0.0.1:{host}", "--product", PRODUCTS[protocol],
                         "--protocol", str(protocol), "--ndr", ndr, "--workstation", "cli.test")
    assert code == 0, (out, err)
    assert f"(KMS V{protocol})" in out
    assert re.search(r"^verified\s+: yes; activated: (yes|no)$", out, re.M), out
    assert re.search(r"^ePID\s+: \d{5}-\d{5}-", out, re.M)
    assert ("HwId" in out) == (protocol == 6)


@pytest.mark.parametrize("major", [4, 5, 6])
def test_activate_json(capsys, host, major):
    protocol = major
    code, out, err = run(capsys, "activate", f"127.0.0.1:{host}", "--product", PRODUCTS[protocol], "--json",
                         "--ndr", "32", "--no-btfn")
    assert code == 0, err
    data = json.loads(out)
    check_shape(data)
    assert data["request"]["version"] == f"{protocol}.0" and data["ndr"] == 32
    assert data["response"]["verified"] is True and data["problems"] == []
    assert isinstance(data["activated"], bool)
    assert data["activated"] == (data["response"]["count"] >= data["request"]["n_policy"])


def test_activate_reaches_activated_once_enough_clients_counted(capsys):
    """A server edition needs N = 5: the fifth distinct client is activated."""
    with HostThread(HostConfig(host="127.0.0.1", port=0)) as thread:
        port = thread.host.address[1]
        flags = []
        for _ in range(5):
            code, out, _ = run(capsys, "activate", f"127.0.0.1:{port}", "--product", WS2019, "--json")
            assert code == 0
            flags.append(json.loads(out)["activated"])
    assert flags == [False, False, False, False, True]  # count = distinct CMIDs (PROTOCOL.md 10.1)


def test_activate_no_btfn_and_no_multiplex(capsys, host):
    code, out, err = run(capsys, "activate", f"127.0.0.1:{host}", "--product", WIN8, "--no-btfn", "--no-multiplex")
    assert code == 0, (out, err)
    assert "verified    : yes" in out


def test_activate_unknown_product_exits_2_with_a_suggestion(capsys, host):
    code, out, err = run(capsys, "activate", f"127.0.0.1:{host}", "--product", "Windows 7 Enterprize")
    assert code == 2 and out == ""
    line = one_line_error(err, "activate")
    assert "did you mean" in line and "'Windows 7 Enterprise'" in line


def test_activate_unreachable_port_exits_3(capsys):
    port = free_port()
    code, out, err = run(capsys, "activate", f"127.0.0.1:{port}", "--product", WIN7, "--timeout", "3")
    assert code == 3 and out == ""
    assert f"cannot reach 127.0.0.1:{port}" in one_line_error(err, "activate")


@pytest.mark.parametrize("argv, needle", [
    (["activate", "--product", WIN7], "HOST[:PORT]"),
    (["activate", "127.0.0.1:1688", "--product", WIN7, "--cmid", "not-a-guid"], "not a GUID"),
    (["activate", "127.0.0.1:notaport", "--product", WIN7], "not a number"),
])
def test_activate_bad_arguments_exit_2(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in one_line_error(err, "activate")


# --- clauses ---

def test_clauses(capsys):
    code, out, err = run(capsys, "clauses")
    assert code == 0 and err == ""
    ids = re.findall(r"^(KMS-[A-Z]+-\d{3})\s", out, re.M)
    assert len(ids) >= 10 and len(ids) == len(set(ids))
    assert "KMS-RPC-001" in ids


def test_clauses_json(capsys):
    code, out, _ = run(capsys, "clauses", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows and all({"id", "title", "area", "ref", "level", "profiles"} <= set(r) for r in rows)
    code, out, _ = run(capsys, "clauses", "--area", "rpc", "--json")
    assert code == 0 and all(r["area"] == "RPC" for r in json.loads(out))


# --- host as a real process, then host-status on its database ---

class HostProcess:
    def __init__(self, *argv: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", *argv], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first_line = self.proc.stdout.readline()  # blocks until the host prints (or dies)

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"host did not stop on SIGTERM within 15 s: {err}")
        return self.proc.returncode, out, err


def test_host_process_serves_and_stops_cleanly_then_host_status(capsys, tmp_path):
    db = tmp_path / "host.sqlite"
    host = HostProcess("--listen", "127.0.0.1:0", "--db", str(db), "--activation-interval", "60",
                       "--renewal-interval", "20160")
    try:
        match = re.fullmatch(r"kmsconf host listening on 127\.0\.0\.1:(\d+)\n", host.first_line)
        assert match, (host.first_line, host.proc.poll())
        port = int(match.group(1))
        assert port != 0
        epids = []
        for product in (WIN7, WS2019):
            code, out, err = run(capsys, "activate", f"127.0.0.1:{port}", "--product", product, "--json")
            assert code == 0, err
            data = json.loads(out)
            assert data["response"]["verified"] is True
            assert (data["response"]["activation_interval"], data["response"]["renewal_interval"]) == (60, 20160)
            epids.append(data["response"]["epid"])
    finally:
        code, out, err = host.stop()
    assert code == 0, err
    assert "kmsconf host stopped" in out
    assert "Traceback" not in err

    code, out, err = run(capsys, "host-status", "--db", str(db), "--json")
    assert code == 0, err
    status = json.loads(out)
    assert {"count", "cache_size", "key_group", "epid", "activation_interval", "renewal_interval"} <= set(status)
    assert status["count"] == 2  # two distinct CMIDs of the Windows application (PROTOCOL.md 10.1)
    assert status["cache_size"] == 50  # 2 x the highest N seen (25)
    assert status["key_group"] == "default"
    assert status["epid"] in epids
    assert (status["activation_interval"], status["renewal_interval"]) == (60, 20160)

    code, out, err = run(capsys, "host-status", "--db", str(db))
    assert code == 0 and re.search(r"^count\s+: 2$", out, re.M)


def test_host_status_without_a_database_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "host-status", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2
    assert "no host database" in one_line_error(err, "host-status")


@pytest.mark.parametrize("listen, needle", [("127.0.0.1:notaport", "not a number"),
                                            ("127.0.0.1:70000", "outside 0..65535"),
                                            (":1688", "no host")])
def test_host_bad_listen_value_exits_2(capsys, listen, needle):
    # the address is refused before anything listens, so this can run in-process
    code, out, err = run(capsys, "host", "--listen", listen)
    assert code == 2 and out == ""
    assert needle in one_line_error(err, "host")


def test_host_on_a_port_in_use_exits_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("host", "--listen", f"127.0.0.1:{port}", timeout=30)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(done.stderr, "host")


def test_host_bad_interval_exits_2(capsys):
    code, _, err = run(capsys, "host", "--listen", "127.0.0.1:0", "--activation-interval", "5")
    assert code == 2
    assert "activation_interval" in one_line_error(err, "host")


def test_module_entry_point_runs():
    done = cli("clauses", timeout=30)
    assert done.returncode == 0 and "KMS-RPC-001" in done.stdout and done.stderr == ""
