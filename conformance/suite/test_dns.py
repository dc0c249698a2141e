"""DNS SRV records of a KMS deployment (guide Tables 4-5, PROTOCOL.md 12)."""

from __future__ import annotations

import ipaddress

import pytest

from conformance.dns.srv import query_srv, resolve
from conformance.harness.evidence import expect
from conformance.net.outcomes import Unreachable
from conformance.net.runner import Runner


def records_of(deployment):
    records = query_srv(deployment.domain, deployment.server)
    expect(bool(records), f"SRV records at _vlmcs._tcp.{deployment.domain}", "none")
    return records


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.rstrip("."))
        return True
    except ValueError:
        return False


@pytest.mark.clause("KMS-DNS-001")
def test_srv_records_exist(dns_deployment):
    records_of(dns_deployment)


@pytest.mark.clause("KMS-DNS-002")
def test_srv_port(dns_deployment):
    for record in records_of(dns_deployment):
        expect(record.port == dns_deployment.port, f"port {dns_deployment.port} for {record.target}", record.port)


@pytest.mark.clause("KMS-DNS-003")
def test_srv_targets_resolve(dns_deployment):
    for record in records_of(dns_deployment):
        expect(record.target not in (".", "") and not is_address(record.target), "a host name as SRV target",
               repr(record.target))
        addresses = resolve(record.target, dns_deployment.server)
        expect(bool(addresses), f"an A/AAAA record for {record.target}", "none")


@pytest.mark.clause("KMS-DNS-004")
def test_advertised_hosts_answer(dns_deployment, kms_target):
    for record in records_of(dns_deployment):
        for address in resolve(record.target, dns_deployment.server):
            result = Runner(address, record.port, kms_target.timeout).activate(kms_target.alive_request())
            if isinstance(result.outcome, Unreachable):
                expect(False, f"{record.target} ({address}:{record.port}) answers", f"unreachable: {result.outcome.error}")
            expect(result.outcome.is_kms_answer, f"{record.target} ({address}:{record.port}) answers a KMS request",
                   result.outcome, result.transcript)
