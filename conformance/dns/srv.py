"""The `_vlmcs._tcp` SRV records in DNS (PROTOCOL.md 12): their name, and asking a server for them.

Shared by the host's publishing, the client's discovery and the suite's DNS checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

SRV_LABEL = "_vlmcs._tcp"


class DnsUnanswered(Exception):
    """The DNS server gave no answer to a query (the message names the server and the query)."""


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # FQDN, with trailing dot



def _query(name: str, rtype: str, server: tuple[str, int]) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    try:
        return dns.query.udp(query, server[0], port=server[1], timeout=3)
    except (OSError, dns.exception.DNSException) as exc:
        raise DnsUnanswered(f"DNS server {server[0]}:{server[1]} did not answer for {name} {rtype}: {exc}") from None


def query_srv(domain: str, server: tuple[str, int], quiet: bool = False, label: str = SRV_LABEL) -> list[SrvRecord]:
    try:
        answer = _query(f"{label}.{domain.rstrip('.')}.", "SRV", server)
    except DnsUnanswered:
        if quiet:
            return []
        raise
    return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text())
            for rrset in answer.answer if rrset.rdtype == dns.rdatatype.SRV for r in rrset]


def resolve(target: str, server: tuple[str, int]) -> list[str]:
    addresses = []
    for rtype in ("A", "AAAA"):
        answer = _query(target, rtype, server)
        addresses += [r.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.from_text(rtype)
                      for r in rrset]
    return addresses
