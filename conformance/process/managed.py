"""A host binary in the suite's charge: started fresh, restarted keeping its state, its clock moved, its deaths seen.

`{dir}` in the command is a scratch directory: a fresh start gets a new, empty one (a host that keeps its
clients in a file starts with none), a restart keeps it (the host's own persistence is under test). The
clock is libfaketime's, when installed, and preloaded only while a clock is needed: the library has bugs
of its own (libfaketime 0.9.10 fails Python's time.sleep with EINVAL when monotonic clocks are left alone),
which must not reach the checks that need no clock. Every start begins at real time. A fresh start is
skipped when nothing was sent since the last one, so clauses that each need an empty table cost one start
each at most.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Callable

from . import faketime
from .monitor import TargetCommand, TargetEvent, TargetProcess


@dataclasses.dataclass(frozen=True)
class HostDeath:
    """The host died or reported a crash: what it was, and the host's output around it."""

    what: str  # "SIGABRT", "exit status 1", "AddressSanitizer: heap-buffer-overflow (SIGABRT)"
    excerpt: tuple[str, ...]

    @classmethod
    def of(cls, event: TargetEvent, excerpt: list[str]) -> "HostDeath":
        if event.report is None:
            what = event.death or "an unknown end"
        else:
            what = event.report.label + (f" ({event.death})" if event.death else "")
        return cls(what, tuple(excerpt))


def is_crash(event: TargetEvent) -> bool:
    """The process ended, or a sanitizer or fatal report appeared (a Python traceback a handler thread survives
    is an uncaught exception, not a crash)."""
    report = event.report
    return event.death is not None or (report is not None and (report.fatal or report.tool != "Python"))


class ManagedHost:
    def __init__(self, command: TargetCommand, host: str = "127.0.0.1", startup_timeout: float = 15.0):
        self.command = command
        self.root = Path(tempfile.mkdtemp(prefix="kmsconf-host-"))
        library = faketime.find_library()
        self.clock = faketime.FakeClock(library, self.root) if library is not None else None
        self._clock_environment = self.clock.environment(dict(os.environ)) if self.clock is not None else {}
        self.process = TargetProcess(command, host, startup_timeout)
        self.clocked = False  # started with libfaketime preloaded
        self.on_address: Callable[[str, int], None] = lambda host, port: None  # the suite's target follows it
        self.dirty = False  # something was sent since the last fresh start
        self._scratches = 0
        self._reach: str | None = None
        self._reach_known = False

    @property
    def address(self) -> tuple[str, int]:
        return self.process.address

    # --- life ---
    def start(self) -> "ManagedHost":
        self._new_scratch()
        self._started(self.process.start)
        return self

    def fresh(self) -> bool:
        """An empty client table and real time: a new start with a new scratch directory, unless nothing was
        sent since the last one. True when it restarted."""
        if not self.dirty and (self.clock is None or not self.clock.offset) and self.process.alive():
            return False
        port = self.process.port
        self.process.stop()
        self.process.poll()  # what the old process wrote last is its own
        self._new_scratch()
        self._started(lambda: self.process.start(port))
        return True

    def restart(self, first: signal.Signals = signal.SIGTERM) -> None:
        """Stop (SIGTERM, or SIGKILL first: nothing saved on the way out) and start again with the same state
        directory and clock: what the host kept is what it persisted."""
        self._started(lambda: self.process.restart(first))

    def use_clock(self, on: bool) -> None:
        """Restart (keeping the state directory) with libfaketime preloaded, or without it again."""
        if on == self.clocked or (on and self.clock is None):
            return
        self.clocked = on
        self.process.environment = dict(self._clock_environment) if on else {}
        if self.clock is not None:
            self.clock.set(0.0)
        self.restart()

    def recover(self) -> None:
        """After a death: start again (same port, same state directory)."""
        self.process.stop()
        self._started(lambda: self.process.start(self.process.port))

    def close(self) -> None:
        self.process.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _new_scratch(self) -> None:
        if self.clock is not None:
            self.clock.set(0.0)
        if self.command.has_dir:
            self._scratches += 1
            path = self.root / f"state-{self._scratches}"
            path.mkdir()
            if self.process.scratch is not None:
                shutil.rmtree(self.process.scratch, ignore_errors=True)
            self.process.scratch = path
        self.dirty = False

    def _started(self, start: Callable[[], object]) -> None:
        start()
        self._reach_known = False  # a new process: look again
        self.on_address(*self.process.address)

    # --- clock ---
    @property
    def clock_offset(self) -> float:
        return self.clock.offset if self.clock is not None else 0.0

    def clock_unavailable(self) -> str | None:
        """None when the host's clock can be moved (it is then running under libfaketime), else why not."""
        if self.clock is None:
            return f"libfaketime is not installed: {faketime.INSTALL_HINT}"
        self.use_clock(True)
        if not self._reach_known:
            self._reach = self.clock.reached(self.process.group_pids())
            self._reach_known = True
        return self._reach

    def advance(self, seconds: float) -> float:
        """Move the host's clock `seconds` on (see clock_unavailable first); the new offset."""
        if self.clock is None or not self.clocked:
            raise RuntimeError("the host runs without libfaketime: ask clock_unavailable() first")
        self.clock.set(self.clock.offset + seconds)
        self.dirty = True
        return self.clock.offset

    # --- watching ---
    def deaths(self) -> list[HostDeath]:
        """Crashes since the last look (a dead process's last report read to its end)."""
        events = self.process.poll() if self.process.alive() else self.process.settle(limit=1.0)
        return [HostDeath.of(e, self.process.excerpt(e.line, before=5, after=25)) for e in events if is_crash(e)]
