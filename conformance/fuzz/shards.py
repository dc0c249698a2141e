"""A fuzz campaign split into shards (one per pytest-xdist worker, CI job or machine), and merged back.

Each shard runs its share of the runs (`shard_runs`) from its own hypothesis stream (`shard_stream`); its
figures are a shard record (`shard_record`), and `merge` adds the records up into one campaign report
(`kmsconf fuzz-merge`, or the plugin at the end of a sharded run).
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable

from conformance.net.address import format_address

from .campaign import CampaignResult, finding_counts, findings_json


def shard_runs(total: int, index: int, count: int) -> int:
    """Shard `index`'s share of `total` runs; the shares of 0..count-1 add up to `total`."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist (shards are 0..{count - 1})")
    return total // count + (1 if index < total % count else 0)


def shard_stream(base: int, index: int) -> int:
    """The random stream of shard `index` in a campaign seeded with `base`: distinct per shard, reproducible."""
    return int.from_bytes(hashlib.sha256(f"kms-fuzz:{base}:{index}".encode()).digest()[:8], "big")


def shard_record(result: CampaignResult, *, campaign: str, index: int, count: int, seed: int,
                 target: tuple[str, int],
                 findings_dir: Path, started: float, ended: float) -> dict:
    """One shard's figures, as JSON (the unit `merge` adds up)."""
    return {"campaign": campaign, "shard": index, "of": count, "seed": seed, "stream": shard_stream(seed, index),
            "machine": socket.gethostname(), "target": format_address(*target),
            "runs": result.runs, "outcomes": dict(result.outcomes), "seconds": round(result.seconds, 3),
            "rate": round(result.rate, 1), "harness_seconds": round(result.harness_seconds, 3),
            "target_seconds": round(result.target_seconds, 3), "restarts": result.restarts, "started": started,
            "ended": ended,
            "findings_dir": str(findings_dir), "findings": findings_json(result),
            "finding_counts": finding_counts(result)}


def _shard_key(shard: dict) -> tuple:
    return shard["campaign"], shard["shard"], shard["of"], shard["stream"], shard["started"]


def merge(shards: Iterable[dict]) -> dict:
    """One campaign report from shard records (a shard seen twice counts once).

    `seconds` is the wall time from the first shard's start to the last one's end, `rate` the
    runs per second over it; `missing` names the shards of each campaign that are absent."""
    unique = {_shard_key(s): s for s in shards}
    ordered = sorted(unique.values(), key=lambda s: (s["campaign"], s["shard"], s["started"]))
    outcomes: Counter = Counter()
    counts: Counter = Counter()
    findings = []
    for s in ordered:
        outcomes.update(s["outcomes"])
        counts.update(s["finding_counts"])
        findings += [{"campaign": s["campaign"], "shard": s["shard"], "machine": s["machine"], **f}
                     for f in s["findings"]]
    runs = sum(s["runs"] for s in ordered)
    seconds = max(s["ended"] for s in ordered) - min(s["started"] for s in ordered) if ordered else 0.0
    missing = {}
    for name in sorted({s["campaign"] for s in ordered}):
        mine = [s for s in ordered if s["campaign"] == name]
        of = max(s["of"] for s in mine)
        absent = sorted(set(range(of)) - {s["shard"] for s in mine if s["of"] == of})
        if absent:
            missing[name] = absent
    return {"runs": runs, "outcomes": dict(sorted(outcomes.items())), "seconds": round(seconds, 3),
            "rate": round(runs / seconds, 1) if seconds > 0 else 0.0,
            "harness_seconds": round(sum(s["harness_seconds"] for s in ordered), 3),
            "target_seconds": round(sum(s["target_seconds"] for s in ordered), 3),
            "findings": findings, "finding_counts": dict(counts), "missing": missing, "shards": ordered}


SHARD_KEYS = {"campaign", "shard", "of", "stream", "machine", "runs", "outcomes", "harness_seconds",
              "target_seconds", "started", "ended", "findings", "finding_counts"}


def shards_of(report: dict) -> list[dict]:
    """The shard records in a campaign report or in a single shard record (ValueError for anything else)."""
    shards = report["shards"] if "shards" in report else [report]
    for s in shards:
        if not isinstance(s, dict) or not SHARD_KEYS <= set(s):
            raise ValueError(f"a shard record needs {', '.join(sorted(SHARD_KEYS))}")
    return shards


def summary_line(report: dict) -> str:
    shards = report["shards"]
    campaigns = ", ".join(sorted({s["campaign"] for s in shards}))
    line = (f"fuzz campaign {campaigns}: {report['runs']} runs in {len(shards)} shard(s), {report['seconds']:.1f} s "
            f"({report['rate']:.0f}/s), {len(report['findings'])} finding(s)")
    if report["missing"]:
        line += "; INCOMPLETE, missing " + "; ".join(f"{c} shard(s) {m}" for c, m in report["missing"].items())
    return line


def write_report(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def merge_files(out: Path, inputs: list[Path], prog: str) -> int:
    """Merge reports from files into `out` and print the verdict; 2 for an unreadable input."""
    shards = []
    for path in inputs:
        try:
            shards += shards_of(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"{prog}: {path}: not a campaign report ({exc})", file=sys.stderr)
            return 2
    report = merge(shards)
    write_report(out, report)
    print(summary_line(report))
    for f in report["findings"]:
        print(f"  FINDING {f['campaign']} shard {f['shard']} on {f['machine']}: {f['mutation']} -> {f['detail']} "
              f"({f['pcap']})")
    return 1 if report["findings"] or report["missing"] else 0
