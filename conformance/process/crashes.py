"""Crash reports in a target's output: what the fuzzer groups findings by.

Recognised: AddressSanitizer and LeakSanitizer (`==PID==ERROR: ...Sanitizer: KIND`, frames `#N 0x... in FUNC`),
UndefinedBehaviorSanitizer (`FILE:LINE:COL: runtime error: ...`, frames with print_stacktrace=1), glibc's own
aborts (`free(): invalid pointer`, `*** stack smashing detected ***`), Python's fatal errors (faulthandler:
`Fatal Python error: Segmentation fault`) and uncaught Python exceptions (`Traceback ...`). Each report gives a
kind and its frames, innermost first; numbers and addresses are left out of the kind so that one bug hit with
other values is one kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SANITIZER_START = re.compile(r"^==(\d+)==ERROR: (\w+Sanitizer): (.*)$")
SANITIZER_END = re.compile(r"^==\d+==ABORTING")
SUMMARY = re.compile(r"^SUMMARY: \w+Sanitizer:")
UBSAN = re.compile(r"^(\S+?):(\d+):\d+: runtime error: (.*)$")
FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-fA-F]+ (?:in (\S+)(?: (\S+))?|\((\S+?)\+0x[0-9a-fA-F]+\))")
GLIBC = re.compile(r"^(?:\*\*\* (.+) \*\*\*: terminated|((?:free|malloc|realloc|munmap_chunk|malloc_consolidate)"
                   r"\(\): .+|double free or corruption.*|corrupted size vs\. prev_size.*))$")
PY_FATAL = re.compile(r"^Fatal Python error: (.+)$")
PY_FRAME = re.compile(r'^\s+File "([^"]+)", line (\d+),? in (\S+)')
PY_TRACEBACK = "Traceback (most recent call last):"
PY_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
PY_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")

# What the kind of a report says about the signal that ends the process
SIGNALS = {"SEGV": "SIGSEGV", "ABRT": "SIGABRT", "BUS": "SIGBUS", "FPE": "SIGFPE", "ILL": "SIGILL",
           "Segmentation fault": "SIGSEGV", "Aborted": "SIGABRT", "Bus error": "SIGBUS",
           "Floating point exception": "SIGFPE", "Illegal instruction": "SIGILL"}
# Frames of the sanitizer runtime and of libc's abort path: the same for every bug, so not what tells bugs apart
RUNTIME_FRAMES = re.compile(r"^(_*interceptor_|__asan|__lsan|__ubsan|__sanitizer|__GI_|__pthread_kill|__libc_|"
                            r"(raise|abort|gsignal|__assert_fail|malloc|calloc|realloc|free|memcpy|memmove|memset|"
                            r"strlen|_start)$)")


@dataclass(frozen=True)
class CrashReport:
    tool: str  # AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer, glibc, Python
    kind: str  # heap-buffer-overflow, SEGV, "shift exponent N is too large ...", Segmentation fault, KeyError
    frames: tuple[str, ...]  # innermost first
    text: str
    fatal: bool  # the process dies of it, or goes on (UBSan by default, an exception in a handler thread)
    pid: int | None = None

    @property
    def signal(self) -> str | None:
        return "SIGABRT" if self.tool == "glibc" else SIGNALS.get(self.kind)

    @property
    def label(self) -> str:
        return f"{self.tool}: {self.kind}"

    def top_frames(self, n: int = 3) -> tuple[str, ...]:
        """The first `n` frames of the program itself (sanitizer runtime and libc's abort path left out)."""
        own = tuple(f for f in self.frames if not RUNTIME_FRAMES.match(f))
        return (own or self.frames)[:n]


def _kind(text: str) -> str:
    return NUMBERS.sub("N", text).strip()


def _frames(lines: list[str], start: int) -> tuple[tuple[str, ...], int]:
    """The run of sanitizer frames at or after `start` (blank lines before it skipped), and the index after it."""
    i = start
    while i < len(lines) and not lines[i].strip() and not FRAME.match(lines[i]):
        i += 1
    frames = []
    while i < len(lines) and (m := FRAME.match(lines[i])):
        function, where, module = m.groups()
        frames.append(function or module)
        i += 1
    return tuple(frames), i


def _sanitizer(lines: list[str], i: int, final: bool) -> tuple[CrashReport | None, int]:
    m = SANITIZER_START.match(lines[i])
    pid, tool, rest = int(m.group(1)), m.group(2), m.group(3)
    kind = _kind(re.split(r" on | \(|:\s*$", rest, maxsplit=1)[0])
    end = None
    for j in range(i + 1, len(lines)):
        if SANITIZER_END.match(lines[j]) or (tool == "LeakSanitizer" and SUMMARY.match(lines[j])):
            end = j
            break
    if end is None and not final:
        return None, i
    end = len(lines) - 1 if end is None else end
    body = lines[i : end + 1]
    first_frame = next((k for k, line in enumerate(body) if FRAME.match(line)), len(body))
    frames, _ = _frames(body, first_frame)
    return CrashReport(tool, kind, frames, "\n".join(body), True, pid), end + 1


def _ubsan(lines: list[str], i: int, final: bool) -> tuple[CrashReport | None, int]:
    m = UBSAN.match(lines[i])
    where = f"{m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}"
    frames, after = _frames(lines, i + 1)
    while after < len(lines) and SUMMARY.match(lines[after]):
        after += 1
    if after >= len(lines) and not final:
        return None, i  # frames may still be coming
    if not frames:
        frames, after = (where,), i + 1
    return CrashReport("UndefinedBehaviorSanitizer", _kind(m.group(3)), frames,
                       "\n".join(lines[i:after]).rstrip(), False), after


def _python_fatal(lines: list[str], i: int, final: bool) -> tuple[CrashReport | None, int]:
    # faulthandler: the error, then each thread's stack ("Current thread 0x...", "Thread 0x..."), in the
    # interpreter's order: the crashing thread is the one marked current, wherever it comes
    kind, j, stacks = PY_FATAL.match(lines[i]).group(1).strip(), i + 1, []
    while j < len(lines):
        line = lines[j]
        if line.startswith(("Current thread", "Thread 0x", "Stack (most recent call first)")):
            stacks.append((line.startswith("Current thread"), []))
        elif (m := PY_FRAME.match(line)) and stacks:
            stacks[-1][1].append(m.group(3))
        elif line.strip() and not line.startswith("  <"):  # "  <no Python frame>" belongs to a stack
            break
        j += 1
    if j >= len(lines) and not final:
        return None, i
    frames = next((f for current, f in stacks if current), stacks[0][1] if stacks else [])
    return CrashReport("Python", kind, tuple(frames), "\n".join(lines[i:j]).rstrip(), True), j


def _python_traceback(lines: list[str], i: int, final: bool) -> tuple[CrashReport | None, int]:
    j, frames, text = i + 1, [], [lines[i]]
    while j < len(lines):
        line = lines[j]
        if m := PY_FRAME.match(line):
            frames.append(m.group(3))
        elif line == PY_TRACEBACK:
            frames = []
        elif line.strip() and not line.startswith((" ", *PY_CHAINED)):  # the exception line ends a traceback
            m = PY_EXCEPTION.match(line)
            if m is None:  # another thread's log line, written in the middle of the traceback: not ours
                j += 1
                continue
            text.append(line)
            k = j + 1
            while k < len(lines) and not lines[k].strip():
                k += 1
            if k >= len(lines) and not final:
                return None, i  # a chained exception may still follow
            if k < len(lines) and lines[k].startswith(PY_CHAINED):
                j = k  # the exception raised while handling this one is the report
                continue
            # Python prints the outermost call first
            return CrashReport("Python", m.group(1), tuple(reversed(frames)), "\n".join(text), False), j + 1
        text.append(line)
        j += 1
    if not final:
        return None, i
    return CrashReport("Python", "uncaught exception", tuple(reversed(frames)), "\n".join(text), False), j


def parse(lines: list[str], final: bool = False) -> tuple[list[CrashReport], int]:
    """The reports in `lines` and how many lines were read. A report still being written when the lines end is
    left unread (its start is where reading stopped) unless `final` says no more lines will come."""
    reports, i = [], 0
    while i < len(lines):
        line = lines[i]
        if SANITIZER_START.match(line):
            report, after = _sanitizer(lines, i, final)
        elif UBSAN.match(line):
            report, after = _ubsan(lines, i, final)
        elif PY_FATAL.match(line):
            report, after = _python_fatal(lines, i, final)
        elif line == PY_TRACEBACK:
            report, after = _python_traceback(lines, i, final)
        elif m := GLIBC.match(line):
            report, after = CrashReport("glibc", _kind(m.group(1) or m.group(2)), (), line, True), i + 1
        else:
            i += 1
            continue
        if report is None:
            return reports, i
        reports.append(report)
        i = after
    return reports, i
