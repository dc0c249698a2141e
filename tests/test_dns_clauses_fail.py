"""Each KMS-DNS clause passes for a correct deployment and fails for a broken one (real named)."""

import json
import subprocess
import sys
from pathlib import Path

import dns.query
import dns.update
import pytest

from conformance.dns.lab import DnsLab, find_named
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from faulty import broken_verdict

pytestmark = pytest.mark.skipif(find_named() is None, reason="BIND's named not installed (make setup installs bind9)")
ROOT = Path(__file__).resolve().parents[1]
ZONE = "deploy.test"


def audit(tmp_path, lab, target, port: int | None) -> dict[str, str]:
    summary = tmp_path / "summary.json"
    advertised = ["--dns-port", str(port)] if port is not None else []
    subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance/suite/test_dns.py"), "-q",
                    "-p", "no:cacheprovider", "--target", f"{target[0]}:{target[1]}", "--dns-domain", ZONE,
                    "--dns-server", f"{lab.host}:{lab.port}", *advertised, "--summary", str(summary)],
                   cwd=ROOT, capture_output=True, text=True, timeout=120)
    return {r["clause"]: r["verdict"] for r in json.loads(summary.read_text())}


def add(lab, *records):
    update = dns.update.UpdateMessage(ZONE)
    for name, rtype, data in records:
        update.add(name, 300, rtype, data)
    assert dns.query.tcp(update, lab.host, port=lab.port, timeout=3).rcode() == 0


@pytest.fixture
def deployment():
    with DnsLab(zones=(ZONE,)) as lab, HostThread(HostConfig(host="127.0.0.2", port=0)) as thread:
        yield lab, thread.host.address


@pytest.mark.parametrize("declared", [True, False], ids=["--dns-port", "port-of-target"])
def test_correct_deployment_passes(tmp_path, deployment, declared):
    lab, (host, port) = deployment
    add(lab, ("_vlmcs._tcp", "SRV", f"0 0 {port} kms.{ZONE}."), ("kms", "A", host))
    # the advertised port is --target's unless --dns-port says otherwise: a host off 1688 is no mistake
    assert set(audit(tmp_path, lab, (host, port), port if declared else None).values()) == {"pass"}


# (records of a broken deployment, the clause it breaks)
FAULTS = [
    ([], "KMS-DNS-001"),
    ([("_vlmcs._tcp", "SRV", "0 0 9999 kms.{zone}."), ("kms", "A", "{host}")], "KMS-DNS-002"),
    ([("_vlmcs._tcp", "SRV", "0 0 {port} ghost.{zone}.")], "KMS-DNS-003"),
    ([("_vlmcs._tcp", "SRV", "0 0 {port} dead.{zone}."), ("dead", "A", "127.0.0.9")], "KMS-DNS-004"),
]


@pytest.mark.parametrize("records,clause", FAULTS, ids=["no-records", "wrong-port", "no-address", "dead-host"])
def test_broken_deployment_fails_its_clause(tmp_path, deployment, records, clause):
    lab, (host, port) = deployment
    if records:
        add(lab, *[(n, t, d.format(zone=ZONE, host=host, port=port)) for n, t, d in records])
    verdicts = audit(tmp_path, lab, (host, port), port)
    assert verdicts[clause] == broken_verdict(clause), verdicts
