"""The reference client with one discovery fault: `python faulty_discovery_client.py FAULT ARGS...`.

ARGS are `kmsconf activate`'s. Each fault wraps the genuine client (conformance.cli and
conformance.reference.client.discovery) from outside: a subclass of DiscoveringClient or a wrapped
function is put in its place, and the genuine code path runs with it. Used to prove each KMS-DISC
clause fails when a client breaks it (and only that clause).
"""

import dataclasses
import json
import random
import sys
from pathlib import Path

from conformance import cli
from conformance.reference.client import discovery

GENUINE_ORDER = discovery.rfc2782_order
STALE_LIST = "faulty-srv-list.json"  # the stale-list fault keeps its first SRV answer here, beside the cached host


def ignore_priority(records, rng):
    """RFC 2782 weights across every record, as if all had one priority."""
    flat = GENUINE_ORDER([dataclasses.replace(r, priority=0) for r in records], rng)
    return [next(r for r in records if (r.target, r.port) == (f.target, f.port)) for f in flat]


def ignore_weight(records, rng: random.Random):
    """Lowest priority first, but a uniform shuffle within a priority."""
    out = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        rng.shuffle(group)
        out += group
    return out


class NoFailover(discovery.DiscoveringClient):
    def candidates(self):
        return super().candidates()[:1]


class NoCache(discovery.DiscoveringClient):
    def load_cache(self, path):
        self.cached = None


class StaleList(discovery.DiscoveringClient):
    """Keeps the first SRV answer for good: once the cached host fails, it uses that list instead of asking DNS."""

    saved: Path | None = None

    def load_cache(self, path):
        super().load_cache(path)
        self.saved = path.with_name(STALE_LIST)

    def candidates(self):
        if self.saved is not None and self.saved.exists():
            return [tuple(c) for c in json.loads(self.saved.read_text())]
        found = super().candidates()
        if self.saved is not None:
            self.saved.write_text(json.dumps(found))
        return found


def ask_dns_anyway():
    """Given a host by hand, ask the system resolver's server for _vlmcs._tcp of its search domain all the same."""
    conf = Path("/etc/resolv.conf").read_text().split()
    server = conf[conf.index("nameserver") + 1]
    domain = conf[conf.index("search") + 1] if "search" in conf else "local"
    discovery.query_srv(domain, (server, 53), quiet=True)


def main(fault: str, args: list[str]) -> int:
    if fault == "ignore-priority":
        discovery.rfc2782_order = ignore_priority
    elif fault == "ignore-weight":
        discovery.rfc2782_order = ignore_weight
    elif fault == "other-name":
        discovery.SRV_LABEL = "_kms._tcp"
    elif fault in ("no-failover", "no-cache", "stale-list"):
        discovery.DiscoveringClient = {"no-failover": NoFailover, "no-cache": NoCache,
                                       "stale-list": StaleList}[fault]
    elif fault == "dns-by-hand":
        ask_dns_anyway()
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    return cli.main(["activate", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
