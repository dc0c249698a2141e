"""Findings: what went wrong, grouped by (outcome, signal or sanitizer kind, top frames), and how they are kept.

Outcomes: crash (the target or one of its children died: a signal, a sanitizer's abort, a fatal error), report
(a sanitizer or runtime report it survived: UBSan, an uncaught exception in a handler), hang (no answer
within the timeout, on a fresh connection either), timeout (a PDU owed an answer got none, while the host
served others), violation (an answer that breaks a rule), and without a monitor dead (the host no longer
serves); classes.py says when each is one.
A finding is written as a pcap of its input (minimised), the input itself as JSON (what `kmsconf fuzz
--replay` sends) and a text file saying what happened, with the target's output around it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from conformance.pcap.writer import write_pcap

from .classes import Run, Transcript
from conformance.process.monitor import TargetEvent
from .program import Program

Signature = tuple[str, str, tuple[str, ...]]  # (outcome, kind, top frames)
TOP_FRAMES = 3


def shape(detail: str) -> str:
    """A detail without its numbers: one kind of answer, whatever values it carried."""
    return re.sub(r"\d+", "N", detail)


def run_signature(run: Run) -> Signature:
    return run.outcome, shape(run.detail), ()


def hang_signature(timeout: float) -> Signature:
    return "hang", f"no answer within {timeout:g} s, on a fresh connection either", ()


def event_signature(event: TargetEvent) -> Signature:
    report = event.report
    if report is None:
        return "crash", event.death or "ended", ()
    outcome = "crash" if report.fatal or event.death else "report"
    kind = report.signal if report.tool == "Python" and report.signal else report.label
    return outcome, kind, report.top_frames(TOP_FRAMES)


def event_detail(event: TargetEvent) -> str:
    outcome, kind, frames = event_signature(event)
    where = f" in {' < '.join(frames)}" if frames else ""
    ended = f" (the target ended: {event.death})" if event.death and event.death != kind else ""
    return f"{kind}{where}{ended}"


def signature_text(signature: Signature) -> str:
    outcome, kind, frames = signature
    return f"{outcome}: {kind}" + (f" in {' < '.join(frames)}" if frames else "")


@dataclass
class Finding:
    outcome: str
    kind: str
    frames: tuple[str, ...]
    detail: str  # one line: what happened
    input: Program  # what reproduces it (minimised when it could be)
    original: Program | None = None  # as the campaign first ran into it, when minimising changed it
    count: int = 1  # times it happened in the campaign
    reproduced: bool = True  # the input alone was seen to do it again (else: it happened with these in flight)
    report: str = ""  # the crash report, as the target wrote it
    output: list[str] = field(default_factory=list)  # the target's output around it
    transcripts: list[Transcript] = field(default_factory=list)  # the input's exchanges, as run
    shrink_executions: int = 0
    pcap: Path | None = None
    replay: str = ""  # the command that replays it

    @property
    def signature(self) -> Signature:
        return self.outcome, self.kind, self.frames

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "kind": self.kind, "frames": list(self.frames), "detail": self.detail,
                "count": self.count, "reproduced": self.reproduced, "mutation": self.input.describe(),
                "pdus": self.input.pdus, "changed_bytes": self.input.changed_bytes,
                "found_as": self.original.describe() if self.original else None,
                "shrink_executions": self.shrink_executions,
                "pcap": None if self.pcap is None else str(self.pcap), "replay": self.replay}


def next_number(directory: Path) -> int:
    """The number after the last finding already in `directory`: a campaign adds to earlier ones' findings."""
    numbers = [int(m.group(1)) for p in directory.glob("finding-*.pcap")
               if (m := re.fullmatch(r"finding-(\d+)-.*\.pcap", p.name))] if directory.is_dir() else []
    return max(numbers, default=0) + 1


def save(directory: Path, number: int, finding: Finding, host: tuple[str, int], replay_target: str) -> Path:
    """finding-NNN-OUTCOME.pcap (the input's exchanges), .json (the input, for --replay), .txt (for people)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"finding-{number:03d}-{finding.outcome}.pcap"
    write_pcap(path, [t for t in finding.transcripts if t] or [[]], host=host)
    finding.pcap = path
    finding.replay = f"kmsconf fuzz --replay {path} {replay_target}"
    rewrite(finding)
    return path


def rewrite(finding: Finding) -> None:
    """The JSON and text beside the pcap, with the finding's count as it stands."""
    path = finding.pcap
    record = finding.to_json() | {"input": finding.input.to_json(),
                                  "original": finding.original.to_json() if finding.original else None}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = [f"outcome: {finding.outcome}", f"kind: {finding.kind}",
             f"frames: {' < '.join(finding.frames) or '-'}", f"detail: {finding.detail}",
             f"seen: {finding.count} time(s)",
             f"input: {finding.input.describe()}"
             + ("" if finding.reproduced else " (NOT reproduced alone: these inputs were in flight when it happened)"),
             *([f"found as: {finding.original.describe()}"] if finding.original else []),
             f"reproduce: {finding.replay}"]
    if finding.report:
        lines += ["", "report:", finding.report]
    if finding.output:
        lines += ["", "target output around it:", *finding.output]
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
