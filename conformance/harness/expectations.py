"""Declared deviations of a target (`--expect`): which clause fails, with what actual outcome or value, and why.

    [[deviation]]
    clause = "KMS-RPC-011"
    actual = "Closed"            # an outcome pattern, a value, or a table of values, as summary.json records it
    reason = "py-kms closes the connection after each response (PROTOCOL.md 1, 14)"

A deviation turns a failure whose `actual` matches into an expected failure (xfail); a
failure with another actual still fails, and a declared clause that passes is stale.
The profiles of known implementations ship with the package: `--expect vlmcsd`, `--expect pykms`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import UsageError

from . import clauses as clause_registry

SHIPPED = Path(__file__).resolve().parents[1] / "targets"


@dataclass(frozen=True)
class Deviation:
    clause: str
    reason: str
    actual: tuple[str | dict, ...]  # any of these (an outcome pattern, a value, or a table of values)


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED / f"{name_or_path}.toml"
    if "/" not in name_or_path and shipped.is_file():
        return shipped
    raise UsageError(f"--expect {name_or_path}: no such file, and no shipped profile of that name "
                     f"(shipped: {', '.join(shipped_profiles())})")


def load_expectations(name_or_path: str) -> dict[str, Deviation]:
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--expect {name_or_path}: {exc}") from None
    known = clause_registry.load()
    out: dict[str, Deviation] = {}
    for row in data.get("deviation", []):
        cid, reason = row.get("clause"), row.get("reason")
        if cid not in known:
            raise UsageError(f"--expect {name_or_path}: unknown clause {cid!r} (see `kmsconf clauses`)")
        if not reason:
            raise UsageError(f"--expect {name_or_path}: deviation {cid} has no reason (a reason is mandatory)")
        if "text" in row:
            raise UsageError(f"--expect {name_or_path}: deviation {cid} matches message text; write the failure's "
                             f"actual outcome or value instead (actual = \"Closed\"; summary.json shows it)")
        actual = row.get("actual")
        if actual is None or actual == [] or actual == {}:
            raise UsageError(f"--expect {name_or_path}: deviation {cid} declares no actual (the outcome or value the "
                             f"failure shows in summary.json, e.g. actual = \"Closed\")")
        actual = tuple(a if isinstance(a, dict) else str(a) for a in (actual if isinstance(actual, list) else [actual]))
        if cid in out:
            raise UsageError(f"--expect {name_or_path}: clause {cid} is declared twice (list several actuals instead)")
        out[cid] = Deviation(cid, reason, actual)
    return out
