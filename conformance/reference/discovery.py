"""DNS SRV publication (host) and discovery (client) of `_vlmcs._tcp` (PROTOCOL.md 12).

Publication is RFC 2136 dynamic update; discovery orders records by RFC 2782
(lowest priority first, weighted random within a priority), drops hosts that do
not answer, caches the first that does and asks DNS again when it fails later.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update

from conformance.wire import hresult

SRV_LABEL = "_vlmcs._tcp"
CACHED_HOST_FILE = "kms-host.json"  # in a client's state directory: the host that answered last
EVENT_PUBLISHED = 12294
EVENT_PUBLISH_FAILED = 12293


class DiscoveryError(Exception):
    """No KMS host could be found or reached; carries the HRESULT a Windows client reports."""

    def __init__(self, message: str, code: int = hresult.SL_E_VL_BINDING_SERVICE_UNAVAILABLE):
        super().__init__(message)
        self.code = code


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


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # FQDN, with trailing dot


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


def _query(name: str, rtype: str, server: tuple[str, int]) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    try:
        return dns.query.udp(query, server[0], port=server[1], timeout=3)
    except (OSError, dns.exception.DNSException) as exc:
        raise DiscoveryError(f"DNS server {server[0]}:{server[1]} did not answer for {name} {rtype}: {exc}") from None


def query_srv(domain: str, server: tuple[str, int], quiet: bool = False) -> list[SrvRecord]:
    try:
        answer = _query(f"{SRV_LABEL}.{domain.rstrip('.')}.", "SRV", server)
    except DiscoveryError:
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


def rfc2782_order(records: list[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """Lowest priority first; within a priority, repeated weighted draws without replacement (RFC 2782)."""
    ordered = []
    for priority in sorted({r.priority for r in records}):
        # zero-weight records first, so they keep a small chance when others have weight (RFC 2782)
        pool = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight != 0)
        while pool:
            total = sum(r.weight for r in pool)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(pool):
                running += record.weight
                if running >= pick:
                    ordered.append(pool.pop(index))
                    break
    return ordered


@dataclass
class DiscoveringClient:
    """Finds a KMS host by DNS like a Windows client: search domains, RFC 2782 order, failover, caching."""

    domains: list[str]
    dns_server: tuple[str, int]
    rng: random.Random = field(default_factory=random.Random)
    manual: tuple[str, int] | None = None  # /skms: discovery off while set
    cached: tuple[str, int] | None = None
    tried: list[tuple[str, int, str]] = field(default_factory=list)  # (host, port, outcome), for diagnostics

    def set_kms(self, host: str, port: int) -> None:
        self.manual = (host, port)

    def clear_kms(self) -> None:
        self.manual = None

    def load_cache(self, path: Path) -> None:
        """The host cached by an earlier run (a Windows client keeps it between activations and renewals)."""
        try:
            saved = json.loads(path.read_text())
            self.cached = (str(saved["host"]), int(saved["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            self.cached = None

    def save_cache(self, path: Path) -> None:
        if self.cached is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps({"host": self.cached[0], "port": self.cached[1]}) + "\n")

    def candidates(self) -> list[tuple[str, int]]:
        records = []
        for domain in self.domains:
            records += query_srv(domain, self.dns_server)
        if not records:
            raise DiscoveryError(f"no {SRV_LABEL} SRV record in {', '.join(self.domains)}")
        out = []
        for record in rfc2782_order(records, self.rng):
            addresses = resolve(record.target, self.dns_server)
            if not addresses:
                self.tried.append((record.target, record.port, "target has no address"))
            out += [(address, record.port) for address in addresses]
        if not out:
            raise DiscoveryError("no SRV target resolves to an address")
        return out

    def run(self, attempt: Callable[[str, int], bool]) -> tuple[str, int]:
        """Call attempt(host, port) on the configured, cached, then discovered hosts until one succeeds."""
        if self.manual is not None:
            if attempt(*self.manual):
                return self.manual
            raise DiscoveryError(f"the configured KMS host {self.manual[0]}:{self.manual[1]} did not answer")
        if self.cached is not None:
            if attempt(*self.cached):
                return self.cached
            self.tried.append((*self.cached, "cached host failed; asking DNS again"))
            self.cached = None
        for host, port in self.candidates():
            if attempt(host, port):
                self.cached = (host, port)
                return host, port
            self.tried.append((host, port, "did not answer"))
        raise DiscoveryError("no discovered KMS host answered")
