"""The clause registry: every conformance check's id, rule, source, level, profiles and footprint.

Clauses live as data in `clauses.toml`; checks name them with
`@pytest.mark.clause("KMS-RPC-001")`. Ids never shift: retire a clause, never renumber.
`accept` holds the outcomes a clause accepts (net.outcomes patterns), `footprint` what
running it does to the host's state (safe, counting, malformed, fuzz).
"""

from __future__ import annotations

import fnmatch
import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.net.outcomes import parse_pattern

CLAUSES_FILE = Path(__file__).with_name("clauses.toml")
AREAS = {
    "RPC": "DCE/RPC binding and PDUs",
    "MSG": "KMS messages and crypto",
    "THR": "Activation thresholds and the count",
    "CACHE": "CMID cache sizing and expiry",
    "GRP": "Product groups (Tables 1 and 2)",
    "TIME": "Timing intervals and request time",
    "ROB": "Robustness against malformed input",
    "CLI": "Client conformance",
    "DNS": "DNS SRV publication and discovery",
    "DISC": "Client discovery",
}
PROFILES = ("microsoft", "emulator")
LEVELS = ("MUST", "SHOULD")
# what a clause's traffic does to the host: safe adds at most the audit's one client entry; counting adds clients;
# malformed sends bad input; fuzz sends thousands of mutated exchanges
FOOTPRINTS = {
    "safe": "well-formed traffic with the audit's one stable CMID",
    "counting": "adds new clients to the host's count (fresh CMIDs) or needs its control channel",
    "malformed": "sends malformed PDUs and payloads",
    "fuzz": "a fuzz campaign of mutated exchanges",
}
# what can contradict a counting or timing rule (harness.host_life): any host's answers; a known, empty client table
# (the control channel's reset, or a fresh start of a host the suite runs); a clock moved on the host; a restart
MEANS = {
    "answers": "the answers alone, on any host",
    "fresh": "a known, empty client table: --control's reset or a fresh start (--target-cmd)",
    "clock": "the host's clock moved: --control, or libfaketime in a host the suite starts",
    "restart": "a restart of the host the suite started (--target-cmd)",
}
ID_PATTERN = re.compile(r"^KMS-(?P<area>[A-Z]+)-\d{3}$")


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    ref: str  # guide section/table or PROTOCOL.md section
    level: str
    profiles: tuple[str, ...]
    footprint: str = "safe"
    accept: tuple[str, ...] = ()  # outcome patterns the clause accepts, where it judges one outcome
    expect: dict[str, Any] = field(default_factory=dict)  # expectations as data, read by the check
    means: tuple[str, ...] = ()  # what can contradict the rule (MEANS); none given: the answers alone

    @property
    def area(self) -> str:
        return ID_PATTERN.match(self.id).group("area")

    @property
    def area_title(self) -> str:
        return AREAS[self.area]


@functools.cache
def load(path: Path = CLAUSES_FILE) -> dict[str, Clause]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    clauses: dict[str, Clause] = {}
    for row in data["clause"]:
        cid = row["id"]
        match = ID_PATTERN.match(cid)
        if not match or match.group("area") not in AREAS:
            raise ValueError(f"{path}: clause id {cid!r} is not KMS-<AREA>-NNN with a known area")
        if cid in clauses:
            raise ValueError(f"{path}: clause id {cid} appears twice")
        if row["level"] not in LEVELS:
            raise ValueError(f"{path}: {cid} level {row['level']!r} is not MUST or SHOULD")
        profiles = tuple(row.get("profiles", PROFILES))
        if set(profiles) - set(PROFILES):
            raise ValueError(f"{path}: {cid} names unknown profiles {profiles}")
        footprint = row.get("footprint")
        if footprint not in FOOTPRINTS:
            raise ValueError(f"{path}: {cid} footprint {footprint!r} is not one of {', '.join(FOOTPRINTS)}")
        accept = tuple(row.get("accept", ()))
        for pattern in accept:
            parse_pattern(pattern)  # ValueError names the pattern
        means = tuple(row.get("means", ()))
        if set(means) - set(MEANS):
            raise ValueError(f"{path}: {cid} means {means} are not among {', '.join(MEANS)}")
        clauses[cid] = Clause(cid, row["title"], row["ref"], row["level"], profiles, footprint, accept,
                              dict(row.get("expect", {})), means)
    return clauses


def select(pattern: str) -> list[Clause]:
    """Clauses named by an id (KMS-RPC-001), an area (KMS-RPC, RPC) or a shell pattern (KMS-MSG-00*)."""
    wanted = pattern.strip().upper()
    registry = load()
    if wanted in registry:
        return [registry[wanted]]
    area = wanted.removeprefix("KMS-")
    if area in AREAS:
        return [c for c in registry.values() if c.area == area]
    return [c for cid, c in registry.items() if fnmatch.fnmatchcase(cid, wanted)]


def get(clause_id: str) -> Clause:
    try:
        return load()[clause_id]
    except KeyError:
        raise KeyError(f"no clause {clause_id} in {CLAUSES_FILE.name}") from None
