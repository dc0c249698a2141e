"""The reference host's DNS SRV publication of `_vlmcs._tcp` (PROTOCOL.md 12): RFC 2136 dynamic update,
one SRV and one A/AAAA record per domain of the publish list."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.update

from conformance.dns.srv import SRV_LABEL, query_srv

EVENT_PUBLISHED = 12294
EVENT_PUBLISH_FAILED = 12293


@dataclass(frozen=True)
class PublishTarget:
    """One entry of the DnsDomainPublishList equivalent: a domain with its priority and weight."""

    domain: str
    priority: int = 0
    weight: int = 0

    @classmethod
    def parse(cls, text: str) -> "PublishTarget":
        """`domain[,priority[,weight]]`."""
        parts = [p.strip() for p in text.split(",")]
        if not parts[0] or len(parts) > 3:
            raise ValueError(f"publish entry {text!r} is not DOMAIN[,PRIORITY[,WEIGHT]]")
        try:
            numbers = [int(p) for p in parts[1:]]
        except ValueError:
            raise ValueError(f"publish entry {text!r}: priority and weight must be numbers") from None
        if any(not 0 <= n <= 65535 for n in numbers):
            raise ValueError(f"publish entry {text!r}: priority and weight must be 0..65535")
        return cls(parts[0].rstrip("."), *numbers)


@dataclass
class Publisher:
    server: tuple[str, int]
    hostname: str  # the host's own label, e.g. "kms1"
    address: str
    port: int
    targets: list[PublishTarget]
    ttl: int = 300
    log: Callable[[dict], None] = lambda event: None

    def fqdn(self, target: PublishTarget) -> str:
        return f"{self.hostname}.{target.domain}."

    def _send(self, update: dns.update.UpdateMessage) -> int:
        return dns.query.tcp(update, self.server[0], port=self.server[1], timeout=5).rcode()

    def publish(self) -> list[tuple[str, bool, str]]:
        """SRV and A/AAAA records in each domain; replaces this host's earlier SRV (a changed port)."""
        results = []
        rtype = "AAAA" if ipaddress.ip_address(self.address).version == 6 else "A"
        for target in self.targets:
            update = dns.update.UpdateMessage(target.domain)
            srv_name = dns.name.from_text(SRV_LABEL, dns.name.from_text(target.domain))
            existing = query_srv(target.domain, self.server, quiet=True)
            for record in existing:
                if record.target.lower() == self.fqdn(target).lower():
                    update.delete(srv_name, "SRV", f"{record.priority} {record.weight} {record.port} {record.target}")
            update.add(srv_name, self.ttl, "SRV", f"{target.priority} {target.weight} {self.port} {self.fqdn(target)}")
            update.replace(self.hostname, self.ttl, rtype, self.address)
            try:
                code = self._send(update)
            except (OSError, dns.exception.DNSException) as exc:
                code, detail = None, f"no answer from {self.server[0]}:{self.server[1]}: {exc}"
            else:
                detail = dns.rcode.to_text(code)
            ok = code == dns.rcode.NOERROR
            self.log({"event": EVENT_PUBLISHED if ok else EVENT_PUBLISH_FAILED, "domain": target.domain,
                      "srv": f"{SRV_LABEL}.{target.domain}", "target": self.fqdn(target), "port": self.port,
                      "priority": target.priority, "weight": target.weight, "result": detail})
            results.append((target.domain, ok, detail))
        return results

    def unpublish(self) -> None:
        for target in self.targets:
            update = dns.update.UpdateMessage(target.domain)
            srv_name = dns.name.from_text(SRV_LABEL, dns.name.from_text(target.domain))
            update.delete(srv_name, "SRV", f"{target.priority} {target.weight} {self.port} {self.fqdn(target)}")
            update.delete(self.hostname)
            try:
                self._send(update)
            except (OSError, dns.exception.DNSException):
                continue  # best effort on the way out
