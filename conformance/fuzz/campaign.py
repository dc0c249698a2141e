"""Fuzz a KMS host: hypothesis draws mutations, each outcome is classified, findings become reproducer pcaps.

Outcomes: response (a KMS answer), error (failure stub with an HRESULT), fault, bind_nak,
closed (connection closed by the host), timeout, dead (the host no longer activates).
Findings are `dead`, `timeout` (a hang) and answers that break a rule (a success
response whose integrity does not verify, or an answer of the wrong PDU type).
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, Phase, given, settings

from conformance.harness.target import Target
from conformance.reference.client import RpcError, read_pdu
from conformance.pcap.writer import write_pcap
from conformance.wire import ndr, rpc
from conformance.wire.framing import open_response
from conformance.wire.messages import DecodeError

from .mutators import Mutation, Seed, apply, mutations

FINDING_OUTCOMES = {"dead", "timeout", "violation"}
BATCH = 50
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
    harness_seconds: float = 0.0  # drawing, mutating, classifying: the fuzzer's own cost
    target_seconds: float = 0.0  # waiting for the target's answers

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def _recv_pdu(sock: socket.socket) -> bytes | None:
    """The next PDU, or None when the host closed the connection instead."""
    try:
        return read_pdu(sock)
    except ConnectionError:
        return None


def _complete(pdu: bytes) -> bool:
    return len(pdu) >= rpc.HEADER_SIZE and rpc.peek_frag_length(pdu) <= len(pdu)


def classify(answer: bytes | None, request_payload_iv: bytes) -> tuple[str, str]:
    """Outcome class and detail for the host's answer to the (possibly mutated) request."""
    if answer is None:
        return "closed", "connection closed"
    try:
        pdu = rpc.decode_pdu(answer)
    except DecodeError as exc:
        return "violation", f"undecodable answer: {exc}"
    if isinstance(pdu, rpc.Fault):
        return "fault", f"fault 0x{pdu.status:08X}"
    if isinstance(pdu, rpc.BindNak):
        return "bind_nak", f"reason {pdu.reason}"
    if not isinstance(pdu, rpc.Response):
        return "violation", f"answered a request with {type(pdu).__name__}"
    try:
        body, code = ndr.decode_response_stub(pdu.stub)
        if body is None:
            return "error", f"HRESULT 0x{code:08X}"
        opened = open_response(body, request_payload_iv)
    except DecodeError as exc:
        return "violation", f"response does not decode: {exc}"
    if not opened.verified:
        return "violation", f"response fails {', '.join(opened.failed_checks())}"
    return "response", f"count {opened.response.count}"


@dataclass
class Run:
    outcome: str
    detail: str
    transcript: list[tuple[str, bytes]]
    waited: float = 0.0  # seconds on the network: connecting, sending, waiting for answers


def run_one(target: Target, bind: bytes, request: bytes, timeout: float) -> Run:
    transcript: list[tuple[str, bytes]] = []
    started = time.perf_counter()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as sock:
            sock.sendall(bind)
            transcript.append(("client", bind))
            if not _complete(bind):
                sock.shutdown(socket.SHUT_WR)  # nothing more is coming: let the host see EOF, not wait
            ack = _recv_pdu(sock)
            if ack is None:
                return Run("closed", "closed after bind", transcript, time.perf_counter() - started)
            transcript.append(("host", ack))
            sock.sendall(request)
            transcript.append(("client", request))
            sock.shutdown(socket.SHUT_WR)
            answer = _recv_pdu(sock)
            if answer is not None:
                transcript.append(("host", answer))
            waited = time.perf_counter() - started
    except socket.timeout:
        return Run("timeout", f"no answer within {timeout} s", transcript, time.perf_counter() - started)
    except ConnectionRefusedError:
        return Run("dead", "connection refused", transcript, time.perf_counter() - started)
    except RpcError as exc:
        return Run("violation", str(exc), transcript, time.perf_counter() - started)
    except OSError as exc:
        return Run("closed", str(exc), transcript, time.perf_counter() - started)
    iv = request[24 + 8 + 4 : 24 + 8 + 20] if len(request) >= 52 else b""
    return Run(*classify(answer, iv), transcript, waited)


def alive(target: Target) -> bool:
    try:
        return target.alive().verified
    except OSError:
        return False


def campaign(target: Target, runs: int | None = None, budget: float | None = None, seed_protocol: int = 6,
             findings_dir: Path = Path("reports/findings"), timeout: float = 3.0,              progress: Callable[[CampaignResult], None] | None = None, seed: Seed | None = None) -> CampaignResult:
    """Up to `runs` mutations or `budget` seconds, whichever ends first."""
    seed = seed or Seed.default(seed_protocol)
    result = CampaignResult()
    started = time.monotonic()
    over = lambda: (budget is not None and time.monotonic() - started > budget) or (runs and result.runs >= runs)

    def one(mutation: Mutation) -> None:
        if over():
            return
        t0 = time.perf_counter()
        bind, request = apply(seed, mutation)
        run = run_one(target, bind, request, timeout)
        result.target_seconds += run.waited
        result.harness_seconds += time.perf_counter() - t0 - run.waited
        outcome, detail, transcript = run.outcome, run.detail, run.transcript
        # a close or silence is fine only while the host still activates afterwards
        if outcome in ("closed", "timeout") and not alive(target):
            outcome, detail = "dead", f"host stopped answering after: {detail}"
        result.runs += 1
        result.outcomes[outcome] += 1
        if outcome in FINDING_OUTCOMES:
            finding = Finding(outcome, mutation, detail)
            signature = (outcome, re.sub(r"\d+", "N", detail))
            result.signatures[signature] += 1
            if result.signatures[signature] <= REPRODUCERS_PER_SIGNATURE:
                finding.pcap = save_finding(findings_dir, len(result.findings) + 1, finding, transcript, target)
                result.findings.append(finding)
        if progress is not None:
            result.seconds = time.monotonic() - started
            progress(result)

    # bounded batches: each draws fresh examples, and the budget is checked between them
    while not over():
        batch = BATCH if runs is None else min(BATCH, runs - result.runs)
        settings(max_examples=batch, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                 phases=[Phase.generate])(given(mutations())(one))()
    result.seconds = time.monotonic() - started
    return result


def save_finding(directory: Path, number: int, finding: Finding, transcript: list[tuple[str, bytes]],
                 target: Target) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"finding-{number:03d}-{finding.outcome}.pcap"
    write_pcap(path, [transcript], host=(target.host, target.port))
    path.with_suffix(".txt").write_text(
        f"outcome: {finding.outcome}\nmutation: {finding.mutation.describe()}\ndetail: {finding.detail}\n"
        f"reproduce: kmsconf replay {path} --target {target.host}:{target.port}\n", encoding="utf-8")
    return path


def print_progress(result: CampaignResult, stream=sys.stderr) -> None:
    if result.runs % 25 and result.runs > 1:
        return
    outcomes = " ".join(f"{k}={v}" for k, v in sorted(result.outcomes.items()))
    stream.write(f"\r{result.runs} runs, {result.rate:.0f}/s, findings {len(result.findings)} | {outcomes}   ")
    stream.flush()
