"""A phase of independent requests (Table 1's editions, every KMS id): at once where the host has shown it answers
simultaneous clients, one at a time where it has not, and a progress line when the phase takes a while.

At once only after KMS-MSG-010 passed in this process, and only as it showed: simultaneous clients of one
protocol version (py-kms, which passes it, mixes up answers to V4, V5 and V6 requests in flight together).
A host that mixes up simultaneous clients fails that clause alone, and every other clause still judges answers
it got one at a time (fault isolation). A phase longer than PROGRESS_AFTER seconds says what it waits for: how
many of how many, and the host's latency.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Hashable, Iterable, TypeVar

import pytest

from .run import run_of

SIMULTANEOUS = "KMS-MSG-010"
AT_ONCE = 16  # requests in flight at most: what MSG-010 showed (12 clients) and a few more
PROGRESS_AFTER = 1.5  # seconds: a phase this long prints a line, then one every PROGRESS_EVERY
PROGRESS_EVERY = 3.0

T = TypeVar("T")
R = TypeVar("R")


def answers_simultaneous_clients(config: pytest.Config) -> bool:
    """KMS-MSG-010 ran in this process and every check of it passed."""
    records = run_of(config).results.get(SIMULTANEOUS, [])
    return bool(records) and all(r["verdict"] == "pass" for r in records)


class _Progress:
    """Lines from the main thread only, with pytest's capture suspended: they are for the terminal, not a check's
    captured output."""

    def __init__(self, config: pytest.Config, what: str, total: int):
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")  # none on an xdist worker
        self.capture = config.pluginmanager.get_plugin("capturemanager")
        self.what, self.total = what, total
        self.started = self.shown = time.monotonic()
        self.latencies: list[float] = []
        self.said = False

    def tick(self, how: str) -> None:
        now = time.monotonic()
        if self.latencies and now - self.started >= PROGRESS_AFTER and (not self.said
                                                                         or now - self.shown >= PROGRESS_EVERY):
            self._line(f"{len(self.latencies)} of {self.total}", how)
            self.shown, self.said = now, True

    def end(self, how: str) -> None:
        if self.said:
            self._line(f"all {self.total} in {time.monotonic() - self.started:.1f} s", how)

    def _line(self, count: str, how: str) -> None:
        if self.reporter is None:
            return
        suspended = self.capture.global_and_fixture_disabled() if self.capture else contextlib.nullcontext()
        with suspended:
            self.reporter.write_line(f"  {self.what}: {count} ({how}; the host answers in "
                                     f"{statistics.median(self.latencies):.2f} s)")


def run_phase(config: pytest.Config, what: str, items: Iterable[T], ask: Callable[[T], R],
              together: Callable[[T], Hashable] = lambda item: None) -> list[R]:
    """`ask` for each item, answers in the items' order. Where the host answers simultaneous clients, the items
    of one `together` key (a protocol version) go at once, one key after another; else one at a time."""
    items = list(items)
    progress = _Progress(config, what, len(items))
    answers: dict[int, R] = {}

    def timed(index: int) -> None:
        started = time.monotonic()
        answers[index] = ask(items[index])
        progress.latencies.append(time.monotonic() - started)

    if not answers_simultaneous_clients(config):
        for index in range(len(items)):
            timed(index)
            progress.tick("one at a time")
        progress.end("one at a time")
        return [answers[i] for i in range(len(items))]
    groups: dict[Hashable, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(together(item), []).append(index)
    how = f"up to {AT_ONCE} at once"
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="kms-phase") as pool:
        for indices in groups.values():
            pending = {pool.submit(timed, index) for index in indices}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # an error in a request is the check's, as it would be one at a time
                progress.tick(how)
    progress.end(how)
    return [answers[i] for i in range(len(items))]


class InAdvance:
    """Plain activations of one protocol version, asked together for the checks that each judge one: the first
    check of a version that asks gets the batch made (at once, as run_phase does), the others take theirs from
    it. Where the host has not shown it answers simultaneous clients, `take` gives nothing and each check asks
    on its own, as before. `wanted(protocol)` says how many the run's checks will take."""

    def __init__(self, config: pytest.Config, target, wanted: Callable[[int], int]):
        self.config, self.target, self.wanted = config, target, wanted
        self.batches: dict[int, list] = {}

    def take(self, protocol: int):
        """An Activation made in advance (its exchange now this check's evidence and footprint), or None."""
        if not answers_simultaneous_clients(self.config):
            return None
        target = self.target
        if protocol not in self.batches:
            count = max(self.wanted(protocol), 1)
            self.batches[protocol] = run_phase(self.config, f"V{protocol} activations for the checks ahead",
                                               range(count), lambda _: target.activate(target.request(protocol)))
        batch = self.batches[protocol]
        if not batch:
            return None
        result = batch.pop(0)
        target.recorded.append(result.transcript)
        target.sent_entries[target.current_clause].add(f"{result.request.app_id}/{result.request.cmid}")
        return result
