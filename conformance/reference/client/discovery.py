"""The reference client's discovery of a KMS host by DNS (PROTOCOL.md 12): records ordered by RFC 2782
(lowest priority first, weighted random within a priority), hosts that do not answer dropped, the first
that does cached, DNS asked again when it fails later."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from conformance.dns.srv import SRV_LABEL, DnsUnanswered, SrvRecord, query_srv, resolve
from conformance.wire import hresult

CACHED_HOST_FILE = "kms-host.json"  # in a client's state directory: the host that answered last


class DiscoveryError(Exception):
    """No KMS host could be found or reached; carries the HRESULT a Windows client reports."""

    def __init__(self, message: str, code: int = hresult.SL_E_VL_BINDING_SERVICE_UNAVAILABLE):
        super().__init__(message)
        self.code = code


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

    def _ask(self, query: Callable[..., list], name: str, **options) -> list:
        try:
            return query(name, self.dns_server, **options)
        except DnsUnanswered as exc:
            raise DiscoveryError(str(exc)) from None

    def candidates(self) -> list[tuple[str, int]]:
        records = []
        for domain in self.domains:
            records += self._ask(query_srv, domain, label=SRV_LABEL)
        if not records:
            raise DiscoveryError(f"no {SRV_LABEL} SRV record in {', '.join(self.domains)}")
        out = []
        for record in rfc2782_order(records, self.rng):
            addresses = self._ask(resolve, record.target)
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
