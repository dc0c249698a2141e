"""The clause registry: every conformance check's id, rule, source, level and profiles.

Clauses live as data in `clauses.toml`; checks name them with
`@pytest.mark.clause("KMS-RPC-001")`. Ids never shift: retire a clause, never renumber.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
}
PROFILES = ("microsoft", "emulator")
LEVELS = ("MUST", "SHOULD")
ID_PATTERN = re.compile(r"^KMS-(?P<area>[A-Z]+)-\d{3}$")


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    ref: str  # guide section/table or PROTOCOL.md section
    level: str
    profiles: tuple[str, ...]
    expect: dict[str, Any] = field(default_factory=dict)  # expectations as data, read by the check

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
        clauses[cid] = Clause(cid, row["title"], row["ref"], row["level"], profiles,
                              dict(row.get("expect", {})))
    return clauses


def get(clause_id: str) -> Clause:
    try:
        return load()[clause_id]
    except KeyError:
        raise KeyError(f"no clause {clause_id} in {CLAUSES_FILE.name}") from None
