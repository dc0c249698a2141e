"""Fuzz a KMS host: hypothesis draws inputs, the runner classifies each answer, findings become reproducers.

Inputs are single-exchange mutations (`mutators`: a bind and a request, one field or some bytes changed) and,
with `sequences`, stateful sequences (`sequences`: PDU orders, contexts, interleaved connections). The
classes of outcomes and the oracles are `classes`'. Without a process monitor the findings are dead (the host no
longer activates), timeout (no answer to a PDU it owed one) and violation (an answer that breaks a rule). With
one (`monitor`: the campaign started the target itself) they are crash, report (a sanitizer report the target
survived), hang, timeout and violation: each event is pinned on the input that does it alone (run again, one
by one, from those in flight), minimised (`shrink`), and counted under its (outcome, kind, top frames): a bug
hit 300 times is one finding seen 300 times. With `connections` K > 1, K inputs are in flight at once
(`inflight`); a finding stops the flow while it is confirmed and minimised.

A campaign split into shards is `shards`' business: their runs, streams and merge.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from conformance.net.address import format_address
from conformance.net.outcomes import SentRequest
from conformance.net.runner import Runner
from conformance.wire import framing, ndr, rpc
from conformance.wire.messages import KmsRequest

from . import findings as found
from .classes import FINDING_CLASSES, SILENCES, Run, fuzz_class, silence_class
from .findings import Finding, Signature
from .inflight import InFlight
from conformance.process.monitor import TargetProcess
from .mutators import Mutation, Seed, apply, mutations
from .program import Program, pdu_kind, run_program
from .sequences import Sequence, render, sequences as sequence_strategy
from .shrink import Shrinker

RPC_STUB_OFFSET = 24 + 8  # request PDU header and body fields, then NDR32's two length words: the KMS payload
BATCH = 250
# Mutations drawn per hypothesis example: the engine's fixed cost per example (~0.9 ms) then spreads
# over 25 mutations (~0.2 ms each in all). Distinct, or the engine's simplest example repeats one 25 times.
DRAWN_TOGETHER = 25
CONFIRM_TRIES = 3  # an event no single input reproduced is tried again this often, then only counted
STARTUP = Program((), "no input: the target reports it as it starts")
INFERRED = ("timeout", "dead", "hang")  # outcomes read from a silence: a finding only where the input alone repeats it


@dataclass
class CampaignResult:
    runs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)  # each counts its occurrences (Finding.count)
    seconds: float = 0.0
    harness_seconds: float = 0.0  # all the rest: drawing, mutating, classifying, saving findings
    target_seconds: float = 0.0  # on the network: exchanges and the liveness probes after a close
    cpu_seconds: float = 0.0  # this process's CPU time over the campaign
    restarts: int = 0  # of a monitored target, after a crash or a hang
    connections: int = 0  # TCP connections the inputs opened (a sequence opens up to three)
    serial_executions: int = 0  # inputs run alone, to confirm and to minimise findings

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def run_one(runner: Runner, bind: bytes, request: bytes) -> Run:
    """One mutated exchange: the (mutated) bind, then the (mutated) request, classified by the runner."""
    started = time.perf_counter()
    sent = SentRequest(None, request[RPC_STUB_OFFSET:])  # opens the answer as far as it can without the request
    outcome, transcript = runner.bind_then(bind, request, sent)
    answered = request if sum(side == "client" for side, _ in transcript) > 1 else bind
    outcome_class, detail = fuzz_class(outcome, pdu_kind(answered))
    if outcome_class == "timeout":
        outcome_class, detail = silence_class(transcript, detail)
    return Run(outcome_class, detail, transcript, time.perf_counter() - started, answer=outcome)


def alive(runner: Runner, probe: Callable[[], KmsRequest]) -> bool:
    """The host still gives a KMS answer. Whether it verifies is the exchanges' business (violations)."""
    return runner.activate(probe()).outcome.is_kms_answer


def _probed(run: Run, alive: bool, waited: float, monitored: bool) -> None:
    """A fresh connection's answer after a close or a silence: none means the host no longer serves (a hang
    under the monitor, whose process is alive; else dead)."""
    run.waited += waited
    if not alive:
        run.outcome = "hang" if monitored else "dead"
        run.detail = f"no KMS answer on a fresh connection either, after: {run.detail}"


class Campaign:
    """One campaign's state: the target (and its monitor), the inputs in flight, the findings so far."""

    def __init__(self, runner: Runner, probe: Callable[[], KmsRequest], seed: Seed, findings_dir: Path, *,
                 monitor: TargetProcess | None = None, connections: int = 1, sequences: float = 0.0,
                 shrink: bool = True, replay_target: str | None = None,
                 progress: Callable[[CampaignResult], None] | None = None):
        self.template, self.probe, self.seed, self.findings_dir = runner, probe, seed, findings_dir
        self.monitor, self.sequences, self.shrink, self.progress = monitor, sequences, shrink, progress
        self.timeout = runner.timeout
        self.runner = self._runner()
        self.replay_target = replay_target or f"--target {format_address(runner.host, runner.port)}"
        self.inflight = InFlight(connections)
        self.result = CampaignResult()
        self.first_number = found.next_number(findings_dir)  # after an earlier campaign's findings, not over them
        self.by_signature: dict[Signature, Finding] = {}
        self.tries: Counter = Counter()  # confirmations tried per signature
        self.recent: deque[tuple[Program, str]] = deque(maxlen=4 * connections + 16)
        self.suspects: list[Program] = []  # no answer or no connection, with a monitor: a hang, or a crash's wake
        self.queued: list[tuple[Program, Run]] = []  # inputs whose own answer is a finding
        self.hang = found.hang_signature(self.timeout)
        self._last_run: Run | None = None
        self._last_events: list = []
        self._running = False  # a campaign records what the target says as it starts; a replay shows it

    def _runner(self) -> Runner:
        t = self.template
        if self.monitor is None:
            return t
        return Runner(*self.monitor.address, t.timeout, t.on_session, t.on_request, t.on_answer)

    # --- running inputs ---
    def program_of(self, item: Mutation | Sequence) -> Program:
        if isinstance(item, Mutation):
            bind, request = apply(self.seed, item)
            # the seed reseals every few minutes: compare with its standard PDUs as they are now
            return Program.pair(bind, request, self.seed.standard(), item.describe())
        return render(self.seed, item)

    def probe_program(self) -> Program:
        payload = framing.seal_request(self.probe())
        request = rpc.Request(ndr.encode_request_stub(payload), rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 2))
        standard = self.seed.standard()
        return Program.pair(standard[0], request.encode(), standard, "liveness probe")

    def needs_probe(self, run: Run) -> bool:
        """A silence is a hang only if a fresh connection gets no answer either; a close is fine while the host
        still activates afterwards (a monitor sees a crash itself)."""
        return run.outcome in SILENCES or (self.monitor is None and run.outcome == "closed")

    async def execute(self, program: Program) -> Run:
        run = await run_program(program, self.runner.host, self.runner.port, self.timeout)
        if self.needs_probe(run):
            probe = await run_program(self.probe_program(), self.runner.host, self.runner.port, self.timeout)
            _probed(run, probe.answer is not None and probe.answer.is_kms_answer, probe.waited,
                    self.monitor is not None)
        return run

    def run_serial(self, program: Program) -> Run:
        """One input alone (nothing else in flight); the single exchange as it always ran, on the runner."""
        pair = program.as_pair
        if pair is None or self.inflight.k > 1:
            return self.inflight.run(self.execute(program))
        run = run_one(self.runner, *pair)
        if self.needs_probe(run):
            started = time.perf_counter()
            _probed(run, alive(self.runner, self.probe), time.perf_counter() - started, self.monitor is not None)
        return run

    def feed(self, item: Mutation | Sequence) -> None:
        program = self.program_of(item)
        if self.inflight.k == 1:
            self.account(program, self.run_serial(program))
        else:
            self.inflight.submit(self.execute(program), program)
            for done, run in self.inflight.take():
                self.account(done, run)
        self.check()

    def quiesce(self) -> None:
        for program, run in self.inflight.drain():
            self.account(program, run)

    # --- what came back ---
    def account(self, program: Program, run: Run) -> None:
        self.result.runs += 1
        self.result.connections += sum(1 for t in run.transcripts if t)
        self.result.target_seconds += run.waited
        self.result.outcomes[run.outcome] += 1
        self.recent.append((program, run.outcome))
        if self.monitor is not None and run.outcome in ("hang", "dead"):
            self.suspects.append(program)
        elif run.outcome in FINDING_CLASSES:
            self.queued.append((program, run))
        if self.progress is not None:
            self.result.seconds = time.monotonic() - self._started
            self.progress(self.result)

    def known(self, signature: Signature) -> bool:
        finding = self.by_signature.get(signature)
        return finding is not None and (finding.reproduced or self.tries[signature] >= CONFIRM_TRIES)

    def check(self, events: list | None = None) -> None:
        """Monitor events, silences and findings of the inputs accounted since the last check; `events` are
        those already read from the monitor (else it is polled)."""
        if events is None:
            events = self.monitor.poll() if self.monitor is not None else []
        if not (events or self.suspects or self.queued):
            return
        urgent = bool(self.suspects) or (self.monitor is not None and not self.monitor.alive()) or not all(
            self.known(s) for s in [found.event_signature(e) for e in events]
            + [found.run_signature(run) for _, run in self.queued])
        candidates = self.candidates()
        if urgent:  # what is in flight may be what did it: let it finish, and the target say its last
            self.quiesce()
            if self.monitor is not None:
                events += self.monitor.settle()
        output = {id(e): self.monitor.excerpt(e.line) for e in events}
        hung, queued = bool(self.suspects), self.queued
        self.suspects, self.queued = [], []
        if self.monitor is not None and urgent and (hung or not self.monitor.alive()):
            self.restart()
        for event in events:
            self.record(found.event_signature(event), found.event_detail(event), candidates,
                        report=event.report.text if event.report else "", output=output[id(event)])
        if hung and not any(e.death for e in events):
            self.record(self.hang, self.hang[1], candidates)
        for program, run in queued:  # an answer is its own evidence; a silence or a death is run again alone
            self.record(found.run_signature(run), run.detail, [program],
                        run=run if run.outcome == "violation" else None)

    def candidates(self) -> list[Program]:
        """The inputs that may have done what the monitor saw, likeliest first: those that got no answer, then
        those in flight, then those closed, then the others, newest first."""
        recent = list(reversed(self.recent))
        ordered = self.suspects + self.inflight.running + [p for p, o in recent if o == "closed"] + [p for p, _ in recent]
        return list(dict.fromkeys(ordered))[: self.recent.maxlen]

    def restart(self) -> None:
        self.monitor.restart()
        self.result.restarts += 1
        self.runner = self._runner()
        self._startup()

    def _startup(self) -> None:
        """Reports the target wrote as it started: findings with no input (they come back with each start)."""
        for event in self.monitor.startup_events if self.monitor is not None and self._running else []:
            self.record(found.event_signature(event), found.event_detail(event) + " (at the target's start)",
                        [STARTUP], run=Run("startup", "", []), report=event.report.text if event.report else "",
                        output=self.monitor.excerpt(event.line))

    # --- findings ---
    def signatures_of(self, program: Program, answers_only: bool = False) -> set[Signature]:
        """What running `program` alone does (the target restarted after, if it died or hung). With
        `answers_only` the answers are what counts: no waiting for a late report."""
        run = self._last_run = self.run_serial(program)
        self.result.serial_executions += 1
        seen = set()
        if run.outcome in FINDING_CLASSES and not (self.monitor is not None and run.outcome == "dead"):
            seen.add(found.run_signature(run))
        if self.monitor is not None:
            events = self._last_events = self.monitor.poll() if answers_only else self.monitor.settle()
            seen |= {found.event_signature(e) for e in events}
            silent = run.outcome in ("hang", "dead") and not any(e.death for e in events)
            if silent:
                seen.add(self.hang)
            if silent or not self.monitor.alive():
                self.restart()
        return seen

    def record(self, signature: Signature, detail: str, candidates: list[Program], *, run: Run | None = None,
               report: str = "", output: list[str] | None = None) -> None:
        finding = self.by_signature.get(signature)
        if finding is not None:
            finding.count += 1
        if self.known(signature):
            return
        self.tries[signature] += 1
        if run is not None:  # the input's own answer: it is the culprit
            culprit, transcripts = candidates[0], run.transcripts
        else:
            culprit, transcripts = None, []
            for program in candidates:
                if signature in self.signatures_of(program):
                    culprit, transcripts = program, self._last_run.transcripts
                    break
        if culprit is None and (finding is not None or signature[0] in INFERRED):
            return  # still not pinned on one input: counted (an inferred outcome never alone did it: no finding)
        if finding is None:
            finding = Finding(*signature, detail, culprit or candidates[0], count=1,
                              reproduced=culprit is not None, report=report, output=output or [],
                              transcripts=transcripts)
            self.by_signature[signature] = finding
            self.result.findings.append(finding)
        else:  # seen before without its input; now it has one
            finding.input, finding.reproduced, finding.transcripts = culprit, True, transcripts
        if culprit is not None and culprit.steps and self.shrink and signature[0] != "dead":
            self.minimise(finding, culprit)
        number = self.first_number + self.result.findings.index(finding)
        found.save(self.findings_dir, number, finding, (self.runner.host, self.runner.port), self.replay_target)

    def minimise(self, finding: Finding, program: Program) -> None:
        """Shrink `finding`'s input (`program`, which does it) to the smallest that still does."""
        exchanges = {}  # of each candidate that reproduced: the pcap shows the minimised input's
        answers_only = finding.outcome == "violation"

        def reproduces(candidate: Program) -> bool:
            if finding.signature not in self.signatures_of(candidate, answers_only):
                return False
            exchanges[candidate] = self._last_run.transcripts
            return True

        shrinker = Shrinker(reproduces)
        smaller = shrinker.shrink(program)
        finding.shrink_executions = shrinker.executions
        if smaller != program:
            finding.original, finding.input, finding.transcripts = program, smaller, exchanges[smaller]

    # --- the campaign ---
    def run(self, runs: int | None, budget: float | None, stream: int | None) -> CampaignResult:
        """Up to `runs` inputs or `budget` seconds, whichever ends first. `stream` fixes the random stream the
        inputs are drawn from (the same stream draws the same inputs); without it hypothesis picks one."""
        batch_seeds = random.Random(stream) if stream is not None else None
        self._started = started = time.monotonic()
        self._running = True
        self._startup()
        cpu = time.process_time()
        result = self.result
        over = lambda: (budget is not None and time.monotonic() - started > budget) or bool(runs and result.runs >= runs)
        fed = [0]  # inputs handed to the runner (in flight ones included): what `runs` bounds
        submitted = lambda: fed[0] >= runs if runs else False

        def several(drawn) -> None:
            nonlocal skip_simplest
            if skip_simplest:  # each batch opens with the engine's simplest example: run it in the first batch only
                skip_simplest = False
                return
            for item in interleave(drawn):
                if over() or submitted():
                    return
                fed[0] += 1
                self.feed(item)

        strategies: dict[int, st.SearchStrategy] = {}  # built once: hypothesis validates a new strategy on first use

        # bounded batches: each draws fresh examples, and the budget is checked between them
        first_batch = True
        try:
            while not over() and not submitted():
                skip_simplest, first_batch = not first_batch, False
                batch = BATCH if runs is None else min(BATCH, runs - fed[0])
                together = min(DRAWN_TOGETHER, batch)
                if together not in strategies:
                    strategies[together] = self.strategy(together)
                test = given(strategies[together])(several)
                if batch_seeds is not None:  # one seed per batch, or every batch would draw the same examples
                    test = hypothesis_seed(batch_seeds.getrandbits(64))(test)
                settings(max_examples=-(-batch // together) + 1, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck), phases=[Phase.generate])(test)()
            self.quiesce()
            self.check()
            if self.monitor is not None:  # a report the last inputs caused, written after they ended
                self.check(self.monitor.settle())  # settle() reads the events: a poll after it sees none
        finally:
            self.inflight.close()
        for finding in result.findings:
            found.rewrite(finding)  # the counts as they ended
        result.seconds = time.monotonic() - started
        result.cpu_seconds = time.process_time() - cpu
        result.harness_seconds = max(result.seconds - result.target_seconds, 0.0)
        return result

    def strategy(self, together: int) -> st.SearchStrategy:
        drawn = st.lists(mutations(), min_size=together, max_size=together, unique=True)
        if not self.sequences:
            return drawn
        extra = max(1, round(together * self.sequences / max(1.0 - self.sequences, 0.05)))
        return st.tuples(drawn, st.lists(sequence_strategy(), min_size=extra, max_size=extra))


def interleave(drawn) -> list:
    """The inputs of one example in the order they run: mutations, with the sequences spread among them."""
    if not isinstance(drawn, tuple):
        return drawn
    single, stateful = drawn
    every = max(1, len(single) // max(len(stateful), 1))
    out = []
    for i, item in enumerate(single):
        out.append(item)
        if (i + 1) % every == 0 and stateful:
            out.append(stateful.pop(0))
    return out + stateful


def campaign(runner: Runner, probe: Callable[[], KmsRequest], runs: int | None = None, budget: float | None = None,
             seed_protocol: int = 6, findings_dir: Path = Path("reports/findings"),
             progress: Callable[[CampaignResult], None] | None = None, seed: Seed | None = None,
             stream: int | None = None, *, monitor: TargetProcess | None = None, connections: int = 1,
             sequences: float = 0.0, shrink: bool = True, replay_target: str | None = None) -> CampaignResult:
    """Up to `runs` inputs or `budget` seconds, whichever ends first; `probe` makes the liveness request
    sent after a close or a silence (the runner's timeout is each exchange's). With `monitor` the target is
    the process it started (its address, not the runner's); `sequences` is the share of stateful inputs."""
    seed = seed or Seed.default(seed_protocol)
    return Campaign(runner, probe, seed, findings_dir, monitor=monitor, connections=connections,
                    sequences=sequences, shrink=shrink, replay_target=replay_target, progress=progress).run(
        runs, budget, stream)


def replay_finding(program: Program, runner: Runner, monitor: TargetProcess | None = None) -> list[str]:
    """Run a finding's input alone: one line per failure it shows (none: it does nothing wrong now), with the
    start of each report."""
    seed = Seed.default()
    replaying = Campaign(runner, lambda: seed.request, seed, Path("."), monitor=monitor, shrink=False)
    try:
        started = monitor.startup_events if monitor is not None else []
        seen = replaying.signatures_of(program)
        lines = [f"at the target's start: {found.signature_text(found.event_signature(e))}" for e in started]
        lines += [found.signature_text(signature) for signature in sorted(seen)]
        for event in [*started, *replaying._last_events]:
            if event.report is not None:
                lines += ["  " + line for line in event.report.text.splitlines()[:12]]
        return lines
    finally:
        replaying.inflight.close()


class Progress:
    """The campaign's progress on `stream`: on a terminal one line redrawn, else a line every `every` seconds
    (CI, a log file), each with runs, rate, findings and outcomes."""

    def __init__(self, stream=sys.stderr, every: float = 5.0):
        self.stream, self.every = stream, every
        self.tty = stream.isatty()
        self.last = time.monotonic()

    def __call__(self, result: CampaignResult) -> None:
        now = time.monotonic()
        if (self.tty and result.runs % 25 and result.runs > 1) or (not self.tty and now - self.last < self.every):
            return
        self.last = now
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(result.outcomes.items()))
        line = (f"{result.runs} runs in {result.seconds:.0f} s, {result.rate:.0f}/s, findings {len(result.findings)} "
                f"| {outcomes}")
        self.stream.write(f"\r{line}   " if self.tty else f"fuzz: {line}\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")


def findings_json(result: CampaignResult) -> list[dict]:
    return [f.to_json() for f in result.findings]


def finding_counts(result: CampaignResult) -> dict[str, int]:
    """Occurrences per finding signature ("outcome: kind in top < frames")."""
    return {found.signature_text(f.signature): f.count for f in result.findings}
