"""Fuzz a KMS host: hypothesis draws mutations, the runner classifies each answer, findings become reproducer pcaps.

Outcomes: response (a KMS answer), error (failure stub with an HRESULT), fault, bind_nak,
closed (connection closed by the host), timeout, dead (the host no longer activates).
Findings are `dead`, `timeout` (a hang) and answers that break a rule (a success
response whose integrity does not verify, or an answer of the wrong PDU type).

A campaign can be split into shards (one per pytest-xdist worker, CI job or machine):
each shard draws from its own hypothesis stream (`shard_stream`), and `merge` adds the
shard records up into one campaign report (`python -m conformance.fuzz.campaign merge`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from conformance.net.address import format_address
from conformance.net.outcomes import (BindNak, Closed, Fault, Outcome, Refusal, Response, SentRequest, Silent,
                                      Unreachable)
from conformance.net.runner import Runner
from conformance.pcap.writer import write_pcap
from conformance.wire.messages import KmsRequest

from .mutators import Mutation, Seed, apply, mutations

FINDING_OUTCOMES = {"dead", "timeout", "violation"}
RPC_STUB_OFFSET = 24 + 8  # request PDU header and body fields, then NDR32's two length words: the KMS payload
BATCH = 250
# Mutations drawn per hypothesis example: the engine's fixed cost per example (~0.9 ms) then spreads
# over 25 mutations (~0.2 ms each in all). Distinct, or the engine's simplest example repeats one 25 times.
DRAWN_TOGETHER = 25
REPRODUCERS_PER_SIGNATURE = 3  # the same finding again and again is counted, not saved again


@dataclass
class Finding:
    outcome: str
    mutation: Mutation
    detail: str
    pcap: Path | None = None


@dataclass
class CampaignResult:
    runs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    signatures: Counter = field(default_factory=Counter)  # (outcome, detail shape) -> occurrences
    seconds: float = 0.0
    harness_seconds: float = 0.0  # all the rest: drawing, mutating, classifying, saving findings
    target_seconds: float = 0.0  # on the network: exchanges and the liveness probes after a close

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def fuzz_class(outcome: Outcome) -> tuple[str, str]:
    """The campaign's class and detail for the runner's outcome of one mutated exchange."""
    if isinstance(outcome, Response):
        if outcome.opened is None:
            return "violation", outcome.describe()
        if not outcome.opened.verified:
            return "violation", f"response fails {', '.join(outcome.opened.failed_checks())}"
        return "response", f"count {outcome.opened.response.count}"
    if isinstance(outcome, Refusal):
        return "error", f"HRESULT 0x{outcome.hresult:08X}"
    if isinstance(outcome, Fault):
        return "fault", outcome.describe()
    if isinstance(outcome, BindNak):
        return "bind_nak", f"reason {outcome.reason}"
    if isinstance(outcome, Closed):
        return "closed", outcome.detail
    if isinstance(outcome, Silent):
        return "timeout", outcome.describe()
    if isinstance(outcome, Unreachable):
        return "dead", outcome.describe()
    # a bind_ack or any other PDU answering a request, or bytes that are no PDU
    return "violation", outcome.describe()


@dataclass
class Run:
    outcome: str
    detail: str
    transcript: list[tuple[str, bytes]]
    waited: float = 0.0  # seconds on the network: connecting, sending, waiting for answers


def run_one(runner: Runner, bind: bytes, request: bytes) -> Run:
    """One mutated exchange: the (mutated) bind, then the (mutated) request, classified by the runner."""
    started = time.perf_counter()
    sent = SentRequest(None, request[RPC_STUB_OFFSET:])  # opens the answer as far as it can without the request
    outcome, transcript = runner.bind_then(bind, request, sent)
    return Run(*fuzz_class(outcome), transcript, time.perf_counter() - started)


def alive(runner: Runner, probe: Callable[[], KmsRequest]) -> bool:
    """The host still gives a KMS answer. Whether it verifies is the exchanges' business (violations)."""
    return runner.activate(probe()).outcome.is_kms_answer


def campaign(runner: Runner, probe: Callable[[], KmsRequest], runs: int | None = None, budget: float | None = None,
             seed_protocol: int = 6, findings_dir: Path = Path("reports/findings"),
             progress: Callable[[CampaignResult], None] | None = None, seed: Seed | None = None,
             stream: int | None = None) -> CampaignResult:
    """Up to `runs` mutations or `budget` seconds, whichever ends first; `probe` makes the liveness request
    sent after a close or a silence (the runner's timeout is each exchange's).

    `stream` fixes the random stream the mutations are drawn from (the same stream draws the
    same mutations); without it hypothesis picks a fresh random one."""
    seed = seed or Seed.default(seed_protocol)
    batch_seeds = random.Random(stream) if stream is not None else None
    result = CampaignResult()
    started = time.monotonic()
    over = lambda: (budget is not None and time.monotonic() - started > budget) or (runs and result.runs >= runs)

    def one(mutation: Mutation) -> None:
        if over():
            return
        bind, request = apply(seed, mutation)
        run = run_one(runner, bind, request)
        result.target_seconds += run.waited
        outcome, detail, transcript = run.outcome, run.detail, run.transcript
        # a close or silence is fine only while the host still activates afterwards
        if outcome in ("closed", "timeout"):
            probe_started = time.perf_counter()
            if not alive(runner, probe):
                outcome, detail = "dead", f"host stopped answering after: {detail}"
            result.target_seconds += time.perf_counter() - probe_started
        result.runs += 1
        result.outcomes[outcome] += 1
        if outcome in FINDING_OUTCOMES:
            finding = Finding(outcome, mutation, detail)
            signature = (outcome, re.sub(r"\d+", "N", detail))
            result.signatures[signature] += 1
            if result.signatures[signature] <= REPRODUCERS_PER_SIGNATURE:
                finding.pcap = save_finding(findings_dir, len(result.findings) + 1, finding, transcript,
                                            (runner.host, runner.port))
                result.findings.append(finding)
        if progress is not None:
            result.seconds = time.monotonic() - started
            progress(result)

    def several(drawn: list[Mutation]) -> None:
        nonlocal skip_simplest
        if skip_simplest:  # each batch opens with the engine's simplest example: run it in the first batch only
            skip_simplest = False
            return
        for mutation in drawn:
            one(mutation)

    strategies: dict[int, st.SearchStrategy] = {}  # built once: hypothesis validates a new strategy on first use

    # bounded batches: each draws fresh examples, and the budget is checked between them
    first_batch = True
    while not over():
        skip_simplest, first_batch = not first_batch, False
        batch = BATCH if runs is None else min(BATCH, runs - result.runs)
        together = min(DRAWN_TOGETHER, batch)
        if together not in strategies:
            strategies[together] = st.lists(mutations(), min_size=together, max_size=together, unique=True)
        test = given(strategies[together])(several)
        if batch_seeds is not None:  # one seed per batch, or every batch would draw the same examples
            test = hypothesis_seed(batch_seeds.getrandbits(64))(test)
        settings(max_examples=-(-batch // together) + 1, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck), phases=[Phase.generate])(test)()
    result.seconds = time.monotonic() - started
    result.harness_seconds = max(result.seconds - result.target_seconds, 0.0)
    return result


def save_finding(directory: Path, number: int, finding: Finding, transcript: list[tuple[str, bytes]],
                 address: tuple[str, int]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"finding-{number:03d}-{finding.outcome}.pcap"
    write_pcap(path, [transcript], host=address)
    path.with_suffix(".txt").write_text(
        f"outcome: {finding.outcome}\nmutation: {finding.mutation.describe()}\ndetail: {finding.detail}\n"
        f"reproduce: kmsconf replay {path} --target {format_address(*address)}\n", encoding="utf-8")
    return path


def print_progress(result: CampaignResult, stream=sys.stderr) -> None:
    if result.runs % 25 and result.runs > 1:
        return
    outcomes = " ".join(f"{k}={v}" for k, v in sorted(result.outcomes.items()))
    stream.write(f"\r{result.runs} runs, {result.rate:.0f}/s, findings {len(result.findings)} | {outcomes}   ")
    stream.flush()


# --- shards: one campaign split over processes or machines, and merged back ---
def shard_runs(total: int, index: int, count: int) -> int:
    """Shard `index`'s share of `total` runs; the shares of 0..count-1 add up to `total`."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist (shards are 0..{count - 1})")
    return total // count + (1 if index < total % count else 0)


def shard_stream(base: int, index: int) -> int:
    """The random stream of shard `index` in a campaign seeded with `base`: distinct per shard, reproducible."""
    return int.from_bytes(hashlib.sha256(f"kms-fuzz:{base}:{index}".encode()).digest()[:8], "big")


def findings_json(result: CampaignResult) -> list[dict]:
    return [{"outcome": f.outcome, "mutation": f.mutation.describe(), "detail": f.detail,
             "pcap": None if f.pcap is None else str(f.pcap)} for f in result.findings]


def finding_counts(result: CampaignResult) -> dict[str, int]:
    """Occurrences per finding signature ("outcome: detail shape"), saved reproducers or not."""
    return {f"{o}: {d}": n for (o, d), n in result.signatures.items()}


def shard_record(result: CampaignResult, *, campaign: str, index: int, count: int, seed: int,
                 target: tuple[str, int],
                 findings_dir: Path, started: float, ended: float) -> dict:
    """One shard's figures, as JSON (the unit `merge` adds up)."""
    return {"campaign": campaign, "shard": index, "of": count, "seed": seed, "stream": shard_stream(seed, index),
            "machine": socket.gethostname(), "target": format_address(*target),
            "runs": result.runs, "outcomes": dict(result.outcomes), "seconds": round(result.seconds, 3),
            "rate": round(result.rate, 1), "harness_seconds": round(result.harness_seconds, 3),
            "target_seconds": round(result.target_seconds, 3), "started": started, "ended": ended,
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
