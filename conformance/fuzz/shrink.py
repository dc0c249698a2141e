"""Minimising a finding's input: the fewest PDUs and the fewest changed bytes that still do the same thing.

Stages, each kept only where the failure reproduces (`reproduces` runs a candidate against the target):
connections dropped, then PDUs, then each PDU put back to its standard form whole, then, inside a request
that still opens, the KMS fields put back one by one and re-sealed with the same IV (through the
encryption: flipping ciphertext bytes back would only break it) and a string field cut to the characters
that matter, then single bytes put back (outside an intact sealed payload). Removal is Zeller's ddmin:
picire, the maintained implementation, works on files and subprocesses and brings four dependencies for
these twenty lines.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence, TypeVar

from conformance.wire import framing
from conformance.wire.layout import IV
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest

from .program import Program

T = TypeVar("T")


def ddmin(items: Sequence[T], keeps: Callable[[list[T]], bool]) -> list[T]:
    """A sub-list for which `keeps` holds and from which no single item can be removed (complement steps)."""
    items, n = list(items), 2
    while len(items) >= 2:
        size = -(-len(items) // n)
        for start in range(0, len(items), size):
            rest = items[:start] + items[start + size :]
            if keeps(rest):
                items, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(items):
                break
            n = min(2 * n, len(items))
    return items


class Budget(Exception):
    """The minimiser ran out of executions or time: what it has so far stands."""


class Shrinker:
    def __init__(self, reproduces: Callable[[Program], bool], max_executions: int = 300, seconds: float = 120.0):
        self._reproduces = reproduces
        self.max_executions, self.deadline = max_executions, time.monotonic() + seconds
        self.executions = 0
        self._seen: dict[Program, bool] = {}

    def test(self, program: Program) -> bool:
        if not program.steps:
            return False
        if program in self._seen:
            return self._seen[program]
        if self.executions >= self.max_executions or time.monotonic() > self.deadline:
            raise Budget()
        self.executions += 1
        self._seen[program] = self._reproduces(program)
        return self._seen[program]

    def shrink(self, program: Program) -> Program:
        best = [program]  # the smallest reproducing program so far

        def keep(candidate: Program) -> bool:
            if self.test(candidate):
                best[0] = candidate
                return True
            return False

        try:
            ddmin(program.connections, lambda kept: keep(
                program.keeping([i for i, s in enumerate(program.steps) if s.connection in kept])))
            fewer = best[0]
            ddmin(range(len(fewer.steps)), lambda kept: keep(fewer.keeping(kept)))
            for i in range(len(best[0].steps)):
                self._revert_step(best, keep, i)
        except Budget:
            pass
        return best[0]

    def _revert_step(self, best: list[Program], keep: Callable[[Program], bool], i: int) -> None:
        step = best[0].steps[i]
        if step.data == step.base or keep(best[0].with_data(i, step.base)):
            return
        sealed = step.kind == "request" and self._revert_fields(best, keep, i)
        step = best[0].steps[i]
        data, base = step.data, step.base
        # single bytes (never inside an intact sealed payload), then the length: a frag_length put back first
        # lets a PDU be cut to the standard length
        protected = range(step.payload_offset, len(data)) if sealed else range(0)
        positions = [p for p in range(min(len(data), len(base))) if data[p] != base[p] and p not in protected]

        def revert(kept: list[int]) -> bool:
            out = bytearray(data)
            for p in positions:
                if p not in kept:
                    out[p] = base[p]
            return keep(best[0].with_data(i, bytes(out)))

        ddmin(positions, revert)
        data = best[0].steps[i].data
        if len(data) != len(base):
            keep(best[0].with_data(i, data[: len(base)] + base[len(data) :]))

    def _revert_fields(self, best: list[Program], keep: Callable[[Program], bool], i: int) -> bool:
        """Put back the KMS fields of a request whose payload still opens; True when it does (so its sealed
        bytes are left to this stage)."""
        step = best[0].steps[i]
        try:
            opened = framing.open_request(step.payload, allow_minor=True)
            standard = framing.open_request(step.base[step.payload_offset :], allow_minor=True).request
        except DecodeError:
            return False
        if not opened.verified:
            return False
        mine = opened.request
        differing = [f.name for f in dataclasses.fields(KmsRequest) if getattr(mine, f.name) != getattr(standard, f.name)]
        iv = bytes(step.payload[IV]) if mine.major in (5, 6) else None
        start = step.payload_offset

        def sealed_with(values: dict) -> Program:
            sealed = framing.seal_request(dataclasses.replace(standard, **values), iv)
            return best[0].with_data(i, step.data[:start] + sealed + step.data[start + len(sealed) :])

        kept = {name: getattr(mine, name) for name in ddmin(differing, lambda names: keep(
            sealed_with({name: getattr(mine, name) for name in names})))}
        for name, value in kept.items():  # a string (the workstation name) as short as it can be
            if isinstance(value, str) and len(value) > 1:
                chars = ddmin(range(len(value)), lambda idx: keep(sealed_with(
                    {**kept, name: "".join(value[j] for j in idx)})))
                kept[name] = "".join(value[j] for j in chars)
        return True
