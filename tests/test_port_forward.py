"""Behind a TCP port-forward (the host on one port, the suite connecting to another) the whole default suite
finds nothing wrong with a correct host: the bind_ack names the host's own port, which is right."""

import json
import subprocess
import sys

from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from faulty import ROOT, SUITE
from forwarder import Forwarder


def test_whole_suite_through_a_forwarder_has_no_failure(tmp_path):
    summary = tmp_path / "summary.json"
    with HostThread(HostConfig(port=0, control=True)) as thread, Forwarder(thread.host.address) as forward:
        host, port = forward.address
        assert port != thread.host.address[1]
        ctl_host, ctl_port = thread.host.control_address
        proc = subprocess.run([sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
                               "--target", f"{host}:{port}", "--control", f"{ctl_host}:{ctl_port}",
                               "--summary", str(summary)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        relayed = forward.connections
    records = {r["clause"]: r for r in json.loads(summary.read_text())}
    bad = {c: r["message"][:200] for c, r in records.items() if r["verdict"] in ("fail", "warn")}
    assert not bad and proc.returncode == 0, (bad, proc.stdout[-2000:])
    assert records["KMS-RPC-003"]["verdict"] == "pass" and relayed > 50


def test_a_control_channel_of_another_host_is_refused(tmp_path):
    with HostThread(HostConfig(port=0)) as target, HostThread(HostConfig(port=0, control=True)) as other:
        host, port = target.host.address
        ctl_host, ctl_port = other.host.control_address
        proc = subprocess.run([sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
                               "--target", f"{host}:{port}", "--control", f"{ctl_host}:{ctl_port}",
                               "--summary", str(tmp_path / "summary.json")], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "--control" in out and "another host" in out, out
    assert len(out.strip().splitlines()) == 1, out
