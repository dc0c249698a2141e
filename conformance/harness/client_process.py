"""One run of a client under test: its command with the placeholders filled in, a time limit, its output.

A client that outlives its time limit is killed with everything it started (its own session),
and the run says so instead of raising: a hung client is a verdict, not a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

PLACEHOLDERS = ("host", "port", "domain", "dns", "state")
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours some clients print even into a pipe


def fill(command: str, **values: object) -> list[str]:
    """argv of `command` with {host}, {port}, {domain}, {dns} and {state} replaced (other braces stay as written)."""
    argv = shlex.split(command)
    for name, value in values.items():
        argv = [part.replace(f"{{{name}}}", str(value)) for part in argv]
    return argv


def placeholders(command: str) -> set[str]:
    return {name for name in PLACEHOLDERS if f"{{{name}}}" in command}


@dataclass
class ProcessResult:
    returncode: int | None  # None: killed after `timeout`
    stdout: str
    stderr: str
    seconds: float
    timeout: float

    @property
    def hung(self) -> bool:
        return self.returncode is None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def last_lines(self, count: int = 3) -> str:
        return last_lines(self.output, count)


def last_lines(output: str, count: int = 3) -> str:
    """A client's last lines of output, on one line, without terminal colours."""
    return " | ".join(_COLOUR.sub("", output).strip().splitlines()[-count:]) or "nothing"


def run_process(argv: list[str], timeout: float) -> ProcessResult:
    """Run argv to its end or to `timeout` seconds (then kill its session); FileNotFoundError if no such program."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
        returncode = None
    return ProcessResult(returncode, stdout, stderr, time.monotonic() - started, timeout)
