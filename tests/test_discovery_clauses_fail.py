"""Each KMS-DISC clause passes for the reference client and fails for a client that breaks it, and only that one;
a client that never asks DNS, hangs or asks for another name gets one clear verdict naming what named saw."""

import shlex
import sys
from pathlib import Path

import pytest

from conformance.dns.lab import find_named
from conformance.dns.namespace import unavailable
from conformance.harness.client_fixtures import REFERENCE_DISCOVERY
from conformance.harness.fixtures import reference_client_command
from faulty import broken_verdict
from test_client_clauses_fail import run_client_suite

pytestmark = [pytest.mark.skipif(find_named() is None, reason="BIND's named not installed (make setup installs bind9)"),
              pytest.mark.skipif(unavailable() is not None, reason=f"the discovery lab's namespace {unavailable()}")]

FAULTY = shlex.quote(str(Path(__file__).with_name("faulty_discovery_client.py")))
PRODUCT = "--product 'Windows 10/11 Enterprise'"
DISCOVERS = f"{REFERENCE_DISCOVERY} {PRODUCT}"
QUICK = ("--clause", "KMS-DISC", "--disc-weight-runs", "12")  # a correct client passes the weight test at any count
FAULTS = [
    ("other-name", "KMS-DISC-001"),
    ("ignore-priority", "KMS-DISC-002"),
    ("ignore-weight", "KMS-DISC-003"),
    ("no-failover", "KMS-DISC-004"),
    ("no-cache", "KMS-DISC-005"),
    ("stale-list", "KMS-DISC-006"),
    ("dns-by-hand", "KMS-DISC-007"),
]


def faulty(fault: str) -> str:
    where = f"{{host}}:{{port}} {PRODUCT}" if fault == "dns-by-hand" else DISCOVERS
    return f"{shlex.quote(sys.executable)} {FAULTY} {fault} {where}"


def test_a_discovering_client_s_requests_are_judged_on_the_host_it_found(tmp_path):
    # the embedded run checks the reference client on every clause; here, through --client-cmd, that the request
    # clauses judge what the host a discovering client found received, and the answer clauses say what they need
    proc, records = run_client_suite(tmp_path, reference_client_command(REFERENCE_DISCOVERY), "--clause",
                                     "KMS-CLI,KMS-DISC-001")
    verdicts = {c: r["verdict"] for c, r in records.items()}
    assert all(verdicts[f"KMS-CLI-00{i}"] == "pass" for i in range(1, 10)) and verdicts["KMS-DISC-001"] == "pass"
    assert all(verdicts[f"KMS-CLI-0{i}"] == "skip" and "{host}:{port}" in records[f"KMS-CLI-0{i}"]["message"]
               for i in range(10, 15)), records


@pytest.mark.parametrize("fault,clause", FAULTS, ids=[f for f, _ in FAULTS])
def test_discovery_clause_fails_for_faulty_client(tmp_path, fault, clause):
    # 40 runs fail a uniform choice in all but about one session in a thousand
    extra = QUICK if fault != "ignore-weight" else ("--clause", "KMS-DISC", "--disc-weight-runs", "40")
    proc, records = run_client_suite(tmp_path, faulty(fault), *extra, timeout=600)
    verdicts = {c: r["verdict"] for c, r in records.items()}
    assert verdicts[clause] == broken_verdict(clause), (verdicts, records[clause])
    assert "Traceback" not in proc.stdout
    others = {c: v for c, v in verdicts.items() if c != clause}
    if fault == "other-name":  # no host found: the other clauses cannot see their rule, and say why
        assert set(others.values()) <= {"inconclusive", "skip"}, verdicts
        assert all("asked named for no _vlmcs._tcp" in records[c]["message"] for c, v in others.items()
                   if v == "inconclusive"), records
        assert "_kms._tcp.names.kms-disc.test SRV" in str(records[clause]["actual"]), records[clause]
    else:
        assert set(others.values()) <= {"pass", "skip"}, verdicts


@pytest.mark.parametrize("command,says", [
    ("true {domain}", "no query at all"),
    ("sh -c 'sleep 600' {domain}", "still running after 6 s"),
], ids=["never-asks-dns", "hangs"])
def test_a_client_that_never_asks_or_hangs(tmp_path, command, says):
    proc, records = run_client_suite(tmp_path, command, "--clause", "KMS-DISC", "--target-timeout", "1", timeout=300)
    verdicts = {c: r["verdict"] for c, r in records.items()}
    assert proc.returncode == 1 and "Traceback" not in proc.stdout, proc.stdout[-3000:]
    failed = [c for c, v in verdicts.items() if v == "fail"]
    assert failed and all(says in str(records[c]["actual"]) for c in failed), records
    assert all("named's query log" in records[c]["detail"] for c in failed), records
    assert set(verdicts.values()) <= {"fail", "inconclusive", "skip"}, verdicts


def test_without_the_namespace_a_client_told_the_dns_server_is_judged(tmp_path):
    judged = [f"KMS-DISC-00{i}" for i in (1, 2, 4, 5, 6)]  # the weight clause counts the same contacts either way
    proc, records = run_client_suite(tmp_path, reference_client_command(REFERENCE_DISCOVERY), "--clause",
                                     ",".join(judged), "--disc-no-namespace", timeout=600)
    assert {c: r["verdict"] for c, r in records.items()} == dict.fromkeys(judged, "pass"), records
    proc, records = run_client_suite(tmp_path, "/bin/true .{domain}", "--clause", "KMS-DISC", "--disc-no-namespace")
    assert all(r["verdict"] == "skip" and "system resolver" in r["message"] for c, r in records.items()
               if c != "KMS-DISC-007"), records
