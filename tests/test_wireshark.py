"""Wireshark agrees: live activations against the reference host, captured by tshark itself on the
loopback interface, dissect as clean DCE/RPC (no malformed packet, no expert error), and `kmsconf decode`
finds the same exchanges, all verified."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conformance import catalog
from conformance.cli import main as kmsconf
from conformance.net.runner import BindOptions
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from conformance.wire import rpc

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark not installed (make setup installs Debian's tshark)")

PI_ERROR = 0x00800000  # Wireshark expert severity "error" (0x00400000 is a warning, 0x00200000 a note)
ACTIVATIONS = [
    # (id, product, options, expect NDR64, expect alter_context)
    ("v4-ndr32", "Windows 7 Enterprise", BindOptions(ndr64=False), False, False),
    ("v5-ndr64", "Windows 8 Enterprise", BindOptions(), True, False),
    ("v6-ndr64", "Windows Server 2019 Datacenter", BindOptions(), True, False),
    ("v6-ndr32-only", "Windows Server 2019 Datacenter", BindOptions(ndr64=False, btfn=False, multiplex=False),
     False, False),
    ("v6-alter-context", "Windows Server 2019 Datacenter", BindOptions(prefer_ndr64=False), False, True),
    ("v4-alter-context", "Windows 7 Enterprise", BindOptions(prefer_ndr64=False), False, True),
]


class Tshark:
    """`tshark -i lo -f "tcp port PORT" -w FILE` as a subprocess, stopped with SIGINT."""

    def __init__(self, port: int, path: Path):
        self.path = path
        self.log = path.with_suffix(".log")
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-F", "pcap", "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )

    def stderr(self) -> str:
        return self.log.read_text(errors="replace").strip()

    def wait_ready(self, timeout: float = 15.0) -> str | None:
        """None once capturing, else why capture is impossible."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = [ln for ln in self.stderr().splitlines() if ln and "Running as user" not in ln]
                return f"tshark exited with status {self.proc.returncode}: " + " | ".join(lines[-3:])
            if "Capturing on" in self.stderr() and self.path.exists():
                time.sleep(0.3)  # dumpcap has the filter attached once it says so; a little margin
                return None
            time.sleep(0.05)
        self.stop()
        return f"tshark did not start capturing within {timeout:.0f} s: {self.stderr()[-300:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            time.sleep(0.5)  # let the last segments reach the ring buffer
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Run every activation against a reference host while tshark captures; yields (pcap, port, results)."""
    workdir = tmp_path_factory.mktemp("wireshark")
    host = HostThread(HostConfig(host="127.0.0.1", port=0))  # build 26100: accepts NDR64
    _, port = host.start()
    try:
        capture = Tshark(port, workdir / "live.pcap")
        problem = capture.wait_ready()
        if problem is not None:
            pytest.skip(reason=f"cannot capture on lo (needs root or CAP_NET_RAW/CAP_NET_ADMIN for dumpcap): {problem}")
        editions = catalog.load()
        results = {}
        try:
            for name, product, options, _, _ in ACTIVATIONS:
                request = build_request(editions.edition(product), workstation=f"{name}.wireshark.test")
                results[name] = activate("127.0.0.1", port, request, options, timeout=10)
        finally:
            capture.stop()
    finally:
        host.stop()
    if not capture.path.exists() or capture.path.stat().st_size <= 24:
        pytest.skip(reason=f"tshark wrote no packets to {capture.path}: {capture.stderr()[-300:]}")
    return capture.path, port, results


def dissect(path: Path, port: int) -> list:
    import asyncio

    import pyshark

    # pyshark asks for the current event loop; tests that ran asyncio.run() before leave none behind
    asyncio.set_event_loop(asyncio.new_event_loop())

    cap = pyshark.FileCapture(str(path), decode_as={f"tcp.port=={port}": "dcerpc"},
                              override_prefs={"tcp.desegment_tcp_streams": "TRUE"})
    try:
        return list(cap)
    finally:
        cap.close()


def expert_severities(packet) -> list[int]:
    out = []
    for layer in packet.layers:
        for field_name in layer.field_names:
            if field_name.endswith("expert_severity") or field_name == "severity" and "expert" in layer.layer_name:
                for f in layer.get_field(field_name).all_fields:
                    out.append(int(f.raw_value or f.show, 0) if str(f.show).startswith("0x") else int(f.show))
    return out


def problems_in(packets) -> list[str]:
    bad = []
    for packet in packets:
        names = [layer.layer_name for layer in packet.layers]
        if "_ws.malformed" in names or "malformed" in names:
            bad.append(f"frame {packet.number}: malformed ({names})")
        errors = [s for s in expert_severities(packet) if s >= PI_ERROR]
        if errors:
            bad.append(f"frame {packet.number}: expert info of severity error ({errors})")
    return bad


def tshark_filter(path: Path, port: int, display_filter: str) -> list[str]:
    out = subprocess.run(["tshark", "-r", str(path), "-d", f"tcp.port=={port},dcerpc", "-Y", display_filter,
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_activations_themselves_verified(live):
    _, _, results = live
    for name, _, _, ndr64, alter in ACTIVATIONS:
        result = results[name]
        assert result.verified, (name, result.problems)
        assert result.ndr64 == ndr64, name
        sent = [rpc.decode_pdu(raw).header.ptype for side, raw in result.transcript if side == "client"]
        assert (rpc.PType.ALTER_CONTEXT in sent) == alter, (name, sent)


def test_wireshark_dissects_every_pdu_cleanly(live):
    path, port, results = live
    packets = dissect(path, port)
    dcerpc = [p for p in packets if "dcerpc" in [layer.layer_name for layer in p.layers]]
    assert dcerpc, "Wireshark found no DCE/RPC in the capture"
    types = [int(p.dcerpc.pkt_type) for p in dcerpc]
    # bind, bind_ack, alter_context, alter_context_resp, request, response
    assert {0, 2, 11, 12, 14, 15} <= set(types), types
    assert types.count(0) == types.count(2) == len(ACTIVATIONS)
    assert types.count(11) == types.count(12) == len(ACTIVATIONS)
    assert types.count(14) == types.count(15) == sum(1 for a in ACTIVATIONS if a[4])
    assert problems_in(packets) == []
    # the same question put to tshark's display filter engine
    assert tshark_filter(path, port, "_ws.malformed || _ws.expert.severity >= error") == []
    # Wireshark reads the opnum and the KMS interface as we do
    requests = [p for p in dcerpc if int(p.dcerpc.pkt_type) == 0]
    assert all(int(p.dcerpc.opnum) == 0 for p in requests)
    frag_lens = sorted(int(p.dcerpc.cn_frag_len) for p in requests)
    assert frag_lens == sorted(len(raw) for r in results.values() for side, raw in r.transcript
                               if side == "client" and raw[2] == 0)


def test_the_malformed_check_can_fail(tmp_path):
    """A bind_ack whose result count runs past its frag_length is flagged by the same check."""
    from conformance.pcap.writer import write_pcap

    ack = bytearray(rpc.BindAck([rpc.ContextResult(0, 0, rpc.NDR32, 2)], sec_addr=b"1688\0").encode())
    ack[32] = 9  # n_results: claims nine, carries one
    bind = rpc.Bind([rpc.ContextElement(0)]).encode()
    path = write_pcap(tmp_path / "bad.pcap", [[("client", bind), ("host", bytes(ack))]], host=("127.0.0.1", 1688))
    found = " ".join(problems_in(dissect(path, 1688)))
    assert "malformed" in found and "expert info of severity error" in found, found
    assert tshark_filter(path, 1688, "_ws.malformed || _ws.expert.severity >= error")


def test_kmsconf_decode_finds_the_same_exchanges(live, capsys):
    path, port, results = live
    assert kmsconf(["decode", str(path), "--port", str(port), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == len(ACTIVATIONS)
    assert all(item["response"]["verified"] for item in items), items
    assert [item["ndr"] for item in items] == [64 if a[3] else 32 for a in ACTIVATIONS]
    assert [item["request"]["workstation"] for item in items] == [f"{a[0]}.wireshark.test" for a in ACTIVATIONS]
    for item, (name, *_rest) in zip(items, ACTIVATIONS):
        result = results[name]
        assert item["request"]["cmid"] == str(result.request.cmid)
        assert item["response"]["epid"] == result.response.response.epid
        assert item["response"]["count"] == result.response.response.count
        assert item["host"] == f"127.0.0.1:{port}"
    assert os.path.getsize(path) > 0
