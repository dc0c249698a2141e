"""What a lab `named` was asked: its query log (BIND's `queries` category), line by line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# 04-Dec-2025 20:02:01.123 client @0x7f.. 127.0.0.1#45678 (_vlmcs._tcp.a.test): query: _vlmcs._tcp.a.test IN SRV +E(0) (127.0.0.1)
_LINE = re.compile(r"client @\S+ (?P<client>\S+)#(?P<port>\d+) \([^)]*\): query: (?P<name>\S+) (?P<cls>\S+) "
                   r"(?P<type>\S+)")


@dataclass(frozen=True)
class Query:
    client: str  # address#port the query came from
    name: str  # as asked, without the trailing dot, lower case
    type: str

    def __str__(self) -> str:
        return f"{self.name} {self.type} from {self.client}"


class QueryLog:
    """The log file named writes; `mark()` and `since(mark)` cut out one client run's queries."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, offset: int = 0) -> list[Query]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            match = _LINE.search(line)
            if match:
                out.append(Query(f"{match['client']}#{match['port']}", match["name"].rstrip(".").lower(),
                                 match["type"].upper()))
        return out


def describe(queries: list[Query]) -> str:
    """named's view of a run, for a verdict: every query, or that there was none."""
    if not queries:
        return "named's query log: no query at all"
    shown = "; ".join(f"{q.name} {q.type}" for q in queries[:12])
    more = f" (and {len(queries) - 12} more)" if len(queries) > 12 else ""
    return f"named's query log: {shown}{more}"
