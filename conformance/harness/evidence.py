"""How a check states its verdict: expected and actual as data, the exchange's bytes, or "inconclusive".

A failing check raises `ClauseFailure` carrying `expected` (the accepted outcomes or value)
and `actual` (what came back) as JSON-able data; the plugin writes them to summary.json,
matches declared deviations against `actual`, and prints them readably. `expect` and `expect_outcome` show the
exchanges the running check made unless given a transcript of their own.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Iterator

from conformance.net.outcomes import Outcome, matches_any
from conformance.net.runner import Transcript

# the connections of the check now running, read when a failure names no transcript (fixtures._clause_context)
_check_exchanges: ContextVar[Callable[[], Iterable[Transcript]]] = ContextVar("check_exchanges", default=list)


class Inconclusive(Exception):
    """The target's state makes the rule unobservable (e.g. its count is already at the cap)."""


class HostWentDown(Exception):
    """The host died, or stopped accepting connections, during a check: the check could not be judged; `record`
    is the failure of the robustness clause that says so."""

    def __init__(self, record: dict):
        super().__init__(record["message"])
        self.record = record


def jsonable(value: Any) -> Any:
    """`value` as JSON data: outcomes by their label, bytes as text or hex, GUIDs as text."""
    if isinstance(value, Outcome):
        return value.label
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return value.hex()
        return text.replace("\0", "\\0") if text.isprintable() or "\0" in text else value.hex()
    if isinstance(value, (uuid.UUID,)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _shown(value: Any) -> str:
    if isinstance(value, Outcome):
        return value.describe()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return " or ".join(value)
    return str(jsonable(value)) if not isinstance(value, str) else value


class ClauseFailure(AssertionError):
    """A clause is broken: what it expects, what came back (both as data), and the bytes that show it."""

    def __init__(self, expected: Any, actual: Any, transcript: Iterable[tuple[str, bytes]] = (), detail: str = ""):
        self.expected = jsonable(expected)
        self.actual = jsonable(actual)
        self.actual_outcome = actual if isinstance(actual, Outcome) else None
        self.transcript = list(transcript)
        self.detail = detail
        message = f"expected: {_shown(expected)}\n  actual: {_shown(actual)}"
        if detail:
            message += f"\n  {detail}"
        super().__init__(message)

    def record(self) -> dict[str, Any]:
        """expected/actual for summary.json."""
        out = {"expected": self.expected, "actual": self.actual}
        if self.detail:
            out["detail"] = self.detail
        return out

    def matches(self, alternatives: Iterable[str | dict]) -> bool:
        """Does this failure's actual match one of a deviation's declared alternatives? A string is an outcome
        pattern or a value as summary.json shows it (a list actual matches when each element is declared); a
        table matches an actual table holding those keys with those values."""
        alternatives = list(alternatives)
        texts = [a for a in alternatives if isinstance(a, str)]
        for alt in alternatives:
            if isinstance(alt, dict):
                if isinstance(self.actual, dict) and all(self.actual.get(k) == v for k, v in alt.items()):
                    return True
            elif self.actual_outcome is not None and _pattern_matches(self.actual_outcome, alt):
                return True
            elif str(self.actual) == alt:
                return True
        return isinstance(self.actual, list) and bool(self.actual) and all(str(e) in texts for e in self.actual)


def _pattern_matches(outcome: Outcome, pattern: str) -> bool:
    try:
        return outcome.matches(pattern)
    except ValueError:  # not a pattern: a value
        return False


@contextmanager
def check_exchanges(source: Callable[[], Iterable[Transcript]]) -> Iterator[None]:
    """While a check runs: `source()` gives the connections it has made so far."""
    token = _check_exchanges.set(source)
    try:
        yield
    finally:
        _check_exchanges.reset(token)


def exchanges_of(item) -> tuple[list[Transcript], tuple[str, int]] | None:
    """The connections a check has made so far, and the host's address; None for a check that makes none."""
    funcargs = getattr(item, "funcargs", {})
    if "kms_target" in funcargs:  # the exchanges this check made with the host
        target = funcargs["kms_target"]
        return [t for t in target.recorded if t], (target.host, target.port)
    if "client_run" in funcargs:  # what the client under test sent, and the instrumented host's answers
        run = funcargs["client_run"]
        return [t for t in run.transcripts() if t], run.address
    return None


def own_transcript() -> Transcript:
    """Every exchange the running check has made so far, connection after connection."""
    return [exchange for connection in _check_exchanges.get()() for exchange in connection]


def expect(condition: bool, expected: Any, actual: Any, transcript: Transcript | None = None,
           detail: str = "") -> None:
    """Fail with expected/actual and the exchange's bytes (given, else the check's own) when `condition` is false."""
    if not condition:
        raise ClauseFailure(expected, actual, own_transcript() if transcript is None else transcript, detail)


def expect_outcome(outcome: Outcome, accepted: Iterable[str], transcript: Transcript | None = None,
                   detail: str = "") -> None:
    """The outcome must match one of the clause's accepted patterns (bytes shown: given, else the check's own)."""
    accepted = list(accepted)
    if not matches_any(outcome, accepted):
        raise ClauseFailure(accepted, outcome, own_transcript() if transcript is None else transcript, detail)


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {offset:04x}  {hex_part:<{width * 3}} {text}")
    return "\n".join(lines)


def transcript_text(transcript: Iterable[tuple[str, bytes]]) -> str:
    parts = []
    for side, data in transcript:
        arrow = "client -> host" if side == "client" else "host -> client"
        parts.append(f"{arrow} ({len(data)} bytes):\n{hexdump(data)}")
    return "\n".join(parts)
