"""Up to K exchanges in flight on one event loop, driven from the campaign's synchronous loop.

`submit` returns at once while fewer than K are running, else runs the loop until one finishes; finished
ones are collected with `take`. Nothing runs between calls, so the campaign can draw the next input, account
for the last and decide to `drain` (for serial work: confirming or shrinking a finding) without locks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine

from conformance.net.loop import new_event_loop


class InFlight:
    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"{k} exchanges in flight: at least 1")
        self.k = k
        self.loop = new_event_loop()
        self.pending: dict[asyncio.Task, Any] = {}
        self._done: list[tuple[Any, Any]] = []

    def submit(self, coroutine: Coroutine, tag: Any) -> None:
        while len(self.pending) >= self.k:
            self._wait(asyncio.FIRST_COMPLETED)
        self.pending[self.loop.create_task(coroutine)] = tag

    def _wait(self, when: str) -> None:
        done, _ = self.loop.run_until_complete(asyncio.wait(list(self.pending), return_when=when))
        for task in done:
            self._done.append((self.pending.pop(task), task.result()))

    def take(self) -> list[tuple[Any, Any]]:
        """(tag, result) of each coroutine finished since the last take."""
        done, self._done = self._done, []
        return done

    def drain(self) -> list[tuple[Any, Any]]:
        if self.pending:
            self._wait(asyncio.ALL_COMPLETED)
        return self.take()

    @property
    def running(self) -> list[Any]:
        return list(self.pending.values())

    def run(self, coroutine: Coroutine) -> Any:
        """One coroutine to its end, alone (drain first)."""
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.drain()
        self.loop.close()
