"""DNS SRV records of a KMS deployment (guide Tables 4-5, PROTOCOL.md 12)."""

from __future__ import annotations

import ipaddress

import pytest

from conformance.harness.evidence import expect
from conformance.reference.client import activate
from conformance.reference.discovery import query_srv, resolve


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
            try:
                result = activate(address, record.port, kms_target.alive_request(), timeout=kms_target.timeout)
            except OSError as exc:
                expect(False, f"{record.target} ({address}:{record.port}) answers", f"unreachable: {exc}")
            expect(result.outcome.is_kms_answer, f"{record.target} ({address}:{record.port}) answers a KMS request",
                   result.outcome, result.transcript)
