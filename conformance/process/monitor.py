"""A process monitor for a target the fuzzer starts itself (`--target-cmd`).

It starts the command on a free loopback port in a process group of its own, stdin from /dev/null, its
stdout and stderr into one pipe; a thread reads that pipe into numbered lines. A target that forks per
connection (vlmcsd) writes through the same pipe from its children, so a report of a child that dies is
read like the parent's. Sanitizers write theirs to a file per process instead (log_path, in a directory of
the monitor's): with several children logging at once, a report on the shared pipe would come interleaved
with their lines. Events are what the fuzzer cannot see on the network: the started process ended (its exit
status or signal), or a crash report appeared (`crashes`). Restarting stops the whole group (hung children
too) and starts the command again on a fresh port.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import UsageError
from conformance.net.address import format_address, free_port
from conformance.net.runner import BindOptions
from conformance.wire import rpc

from . import crashes

KEPT_LINES = 20_000  # the target's latest output lines, for the excerpt around each finding
QUIET_AT_MOST = 0.3  # seconds of silence after which a report that could go on (UBSan, Python) has ended
DEATH_GRACE = 0.5  # seconds a process that wrote a fatal report of its own is given to end
SCAN_EVERY = 0.02  # seconds between two listings of the sanitizers' directory (a thousand polls a second)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Sanitizer options a monitor needs (added only when the user's own options do not set them): abort() reported
# with its stack, UBSan reports with theirs, so that findings group by frames
SANITIZER_DEFAULTS = {"ASAN_OPTIONS": {"handle_abort": "1"}, "UBSAN_OPTIONS": {"print_stacktrace": "1"},
                      "LSAN_OPTIONS": {}}
REPORT_FILE = "sanitizer"  # a sanitizer writes sanitizer.PID in the monitor's report directory
READINESS_BIND = rpc.Bind(BindOptions(ndr64=False, btfn=False).contexts(),
                          rpc.Header(rpc.PType.BIND, rpc.FIRST_LAST, 2)).encode()


@dataclass(frozen=True)
class TargetCommand:
    """The --target-cmd template: a command line with {port} (and optionally {host}) where its address goes, and
    optionally {dir}: a scratch directory of its own, empty at each fresh start, for a host that keeps its state
    in files."""

    template: str
    argv: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, option: str = "--target-cmd") -> "TargetCommand":
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise UsageError(f"{option} {text!r}: {exc}") from None
        example = '"/path/to/vlmcsd -D -e -L 127.0.0.1:{port}"'
        if not argv:
            raise UsageError(f"{option} is empty: give the target's command, e.g. {example}")
        program = argv[0]
        if shutil.which(program) is None and not (Path(program).is_file() and os.access(program, os.X_OK)):
            raise UsageError(f"{option}: {program!r} is not an executable on PATH or a path to one")
        if "{port}" not in text:
            raise UsageError(f"{option} {text!r}: put {{port}} where the target takes the port to listen on "
                             f"(it listens on 127.0.0.1), e.g. {example}")
        return cls(text, argv)

    @property
    def has_dir(self) -> bool:
        return "{dir}" in self.template

    def argv_for(self, host: str, port: int, scratch: Path | None = None) -> list[str]:
        argv = [arg.replace("{port}", str(port)).replace("{host}", host) for arg in self.argv]
        return [arg.replace("{dir}", str(scratch)) for arg in argv] if scratch is not None else argv


class TargetStartError(RuntimeError):
    """The target did not come up listening (it exited, or it did not listen in time)."""


@dataclass(frozen=True)
class TargetEvent:
    report: crashes.CrashReport | None
    death: str | None  # how the started process ended, when it did: "SIGSEGV", "exit status 1"
    line: int  # number of the output line where it was seen (for the excerpt around it)


def sanitizer_environment(environ: dict[str, str], report_dir: Path) -> dict[str, str]:
    env = dict(environ, PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")  # a Python target reports fatal errors
    for name, defaults in SANITIZER_DEFAULTS.items():
        given = env.get(name, "")
        keys = {item.split("=", 1)[0] for item in given.split(":") if item}
        wanted = {**defaults, "log_path": str(report_dir / REPORT_FILE)}  # a log_path of the user's stands
        env[name] = ":".join(filter(None, [given, *(f"{k}={v}" for k, v in wanted.items() if k not in keys)]))
    return env


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # after the command name: state, ppid, pgrp
            members.append(int(entry.name))
    return members


def listening_ports(pids: list[int]) -> list[str]:
    """The TCP addresses these processes listen on (from /proc): where a host went that ignored {port}."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd) if fd.is_symlink() else ""
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            host = (socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]) if width == 8 else
                    socket.inet_ntop(socket.AF_INET6, b"".join(bytes.fromhex(address[i:i + 8])[::-1]
                                                               for i in range(0, 32, 8))))
            found.append(format_address(host, int(port, 16)))
    return sorted(set(found))


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # 300 crashes must not write 300 core files


def describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class TargetProcess:
    """The started target; `poll()` after each execution, `settle()` to let a late report arrive."""

    def __init__(self, command: TargetCommand, host: str = "127.0.0.1", startup_timeout: float = 15.0,
                 environment: dict[str, str] | None = None):
        self.command, self.host, self.startup_timeout = command, host, startup_timeout
        self.environment = dict(environment or {})  # added to this process's own (libfaketime's, for one)
        self.scratch: Path | None = None  # what {dir} stands for: set by whoever owns the host's state
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._total = 0  # lines read since the first start (numbers of lines are kept across restarts)
        self._parsed = 0  # lines already read for reports
        self._last_output = 0.0
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._death_seen = False
        self.report_dir = Path(tempfile.mkdtemp(prefix="kmsconf-target-"))
        self._report_lines: dict[Path, int] = {}  # lines of each sanitizer file already read
        self._finished: set[Path] = set()  # files whose process is gone, read to the end
        self.startup_events: list[TargetEvent] = []  # of the latest start
        self._scanned = 0.0  # when the sanitizers' directory was last listed

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def argv(self) -> list[str]:
        return self.command.argv_for(self.host, self.port, self.scratch)

    # --- life ---
    def start(self, port: int | None = None) -> "TargetProcess":
        """Start the command on `port` (a restart keeps its port) or a free one, and wait until it serves."""
        self.port = port or free_port(self.host)
        if self.command.has_dir and self.scratch is None:  # a campaign's host: one state directory for its life
            self.scratch = self.report_dir / "state"
            self.scratch.mkdir(exist_ok=True)
        environment = sanitizer_environment(dict(os.environ, **self.environment), self.report_dir)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_no_core_files,
                                     env=environment)
        self.starts += 1
        self._death_seen = False
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                last = self.last_output()
                raise TargetStartError(f"the target exited ({describe_status(self.proc.returncode)}) before "
                                       f"listening on {format_address(*self.address)}; its last output: {last}")
            if not self._serving():
                if time.monotonic() > deadline:
                    elsewhere = listening_ports(self.group_pids())
                    self.stop()
                    last = self.last_output()
                    where = (f"it listens on {', '.join(elsewhere)} instead: put {{port}} where it takes its port"
                             if elsewhere else "does it take the port from {port}?")
                    raise TargetStartError(f"the target did not listen on {format_address(*self.address)} within "
                                           f"{self.startup_timeout:g} s: {where}; its last output: {last}")
                time.sleep(0.02)
                continue
            # what it reports before any input (a sanitizer report at start) is no input's doing
            self.startup_events = self.settle(limit=1.0)
            return self

    def _serving(self) -> bool:
        """It answers a bind (or closes on it): past its start-up, in the loop that serves connections, and not
        merely listening (what it writes at start is then written)."""
        try:
            with socket.create_connection(self.address, timeout=1.0) as sock:
                sock.sendall(READINESS_BIND)
                sock.recv(1)
        except (ConnectionRefusedError, socket.timeout):  # not listening yet, or not yet accepting
            return False
        except ConnectionError:  # reset: it did handle the bind
            return True
        except OSError:
            return False
        return True

    def group_pids(self) -> list[int]:
        """The started process and every process of its group (a forking host's children)."""
        if self.proc is None:
            return []
        return [self.proc.pid] + [pid for pid in _group_members(self.proc.pid) if pid != self.proc.pid]

    def stop(self, first: signal.Signals = signal.SIGTERM) -> None:
        """Stop the whole process group (children of a forking target too) and read what it wrote last; `first`
        SIGKILL gives it no chance to save anything (a power cut, an OOM kill)."""
        if self.proc is None:
            return
        signals = ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)) if first == signal.SIGTERM else ((first, 5.0),)
        for sig, grace in signals:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # the leader is gone; its children go with SIGKILL
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        if self._reader is not None:
            self._reader.join(2.0)
        self.proc.stdout.close()
        self._death_seen = True

    def close(self) -> None:
        """Stop it for good, and remove the sanitizer reports' directory."""
        self.stop()
        shutil.rmtree(self.report_dir, ignore_errors=True)

    def restart(self, first: signal.Signals = signal.SIGTERM) -> None:
        """Stop it and start it again on the same port (a fresh one if that is taken meanwhile)."""
        port = self.port
        self.stop(first)
        self.poll()  # reports still unread belong to the old process: read them before the new one writes
        try:
            self.start(port)
        except TargetStartError:
            if _port_free(self.host, port):
                raise
            self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "TargetProcess":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- output ---
    def _read(self, pipe) -> None:
        pending = b""
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self._add(complete)
        if pending:
            self._add([pending])

    def _add(self, raw: list[bytes]) -> None:
        lines = [ANSI.sub("", line.decode("utf-8", "replace").rstrip("\r")) for line in raw]
        with self._lock:
            self._lines.extend(lines)
            self._total += len(lines)
            self._last_output = time.monotonic()

    def last_output(self, count: int = 4) -> str:
        """Its last non-blank output lines on one line: what a one-line error quotes."""
        return " | ".join(line for line in self.lines()[-count:] if line.strip()) or "no output"

    def mark(self) -> int:
        """The number of the next output line."""
        with self._lock:
            return self._total

    def lines(self, start: int = 0, end: int | None = None) -> list[str]:
        """Output lines numbered start..end-1, as far as they are still kept."""
        with self._lock:
            first = self._total - len(self._lines)
            end = self._total if end is None else min(end, self._total)
            return [self._lines[n - first] for n in range(max(start, first), end)]

    def excerpt(self, line: int, before: int = 15, after: int = 60) -> list[str]:
        """The output around line number `line`: what the target said before a finding, and the report."""
        return self.lines(max(line - before, 0), line + after)

    # --- events ---
    def _unread(self) -> tuple[int, list[str]]:
        with self._lock:
            first = self._total - len(self._lines)
        start = max(self._parsed, first)
        return start, self.lines(start)

    def _ended(self, wait: float = 0.0) -> bool:
        """The started process ended and that was not reported yet (its output read to the end, as far as its
        children let the pipe close)."""
        if self.proc is None or self._death_seen:
            return False
        if wait:
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                return False
        if self.proc.poll() is None:
            return False
        if self._reader is not None:
            self._reader.join(1.0)
        return True

    def _reports(self, final: bool) -> list[tuple[crashes.CrashReport, int]]:
        """New complete reports, each with the output line where it was seen: on the pipe, then in the
        sanitizers' files (a file is complete once its process is gone)."""
        start, lines = self._unread()
        reports, read = crashes.parse(lines, final=final)
        self._parsed = start + read
        found = [(r, start) for r in reports]
        here = self.mark()
        if not final and time.monotonic() - self._scanned < SCAN_EVERY:
            return found
        self._scanned = time.monotonic()
        for path in sorted(set(self.report_dir.glob(f"{REPORT_FILE}.*")) - self._finished):
            done = self._report_lines.get(path, 0)
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[done:]
            pid = int(path.suffix[1:]) if path.suffix[1:].isdigit() else None
            gone = not _running(pid)
            reports, read = crashes.parse(lines, final=final or gone)
            self._report_lines[path] = done + read
            if gone:
                self._finished.add(path)  # its process wrote its last
            found += [(dataclasses.replace(r, pid=r.pid or pid), here) for r in reports]
        return found

    def poll(self, final: bool = False) -> list[TargetEvent]:
        """Reports that appeared since the last poll, and the end of the process if it ended since; with
        `final`, a report still being written is taken as it is."""
        died = self._ended()
        reports = self._reports(final or died)
        if not died and any(r.fatal and r.pid in (None, self.proc.pid) for r, _ in reports):
            died = self._ended(DEATH_GRACE)  # the report the process itself is dying of: one event with its end
            if died:
                reports += self._reports(True)
        events = [TargetEvent(r, None, line) for r, line in reports]
        if died:
            self._death_seen = True
            death = describe_status(self.proc.returncode)
            fatal = [i for i, e in enumerate(events) if e.report.fatal]
            if fatal:  # the report the process died of, and how it ended: one event
                events[fatal[-1]] = TargetEvent(events[fatal[-1]].report, death, events[fatal[-1]].line)
            else:
                events.append(TargetEvent(None, death, self.mark()))
        return events

    def settle(self, quiet: float = 0.05, limit: float = 3.0) -> list[TargetEvent]:
        """Poll once the target has been quiet for `quiet` seconds with no report half written (or for
        QUIET_AT_MOST whatever it wrote), or it ended, or `limit` passed: a report written as a connection
        drops is then read with the input that caused it."""
        started = time.monotonic()
        deadline = started + limit
        while time.monotonic() < deadline and self.alive():
            with self._lock:  # quiet since the call too: what was written just before may not be read yet
                idle = time.monotonic() - max(self._last_output, started)
            if idle >= QUIET_AT_MOST:
                break
            if idle >= quiet:
                _, lines = self._unread()
                if crashes.parse(lines)[1] == len(lines):
                    break
            time.sleep(0.005)
        return self.poll(final=True)
