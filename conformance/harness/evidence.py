"""How a failing check explains itself: what was expected, what came back, and the bytes."""

from __future__ import annotations

from typing import Iterable


class Inconclusive(Exception):
    """The target's state makes the rule unobservable (e.g. its count is already at the cap)."""


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


def expect(condition: bool, expected: object, actual: object,
           transcript: Iterable[tuple[str, bytes]] = (), detail: str = "") -> None:
    """Fail with expected/actual and the exchange's bytes when `condition` is false."""
    if condition:
        return
    message = f"expected: {expected}\n  actual: {actual}"
    if detail:
        message += f"\n  {detail}"
    transcript = list(transcript)
    if transcript:
        dump = transcript_text(transcript)
        message += "\n" + dump
        from conformance.report.allure_labels import attach_transcript

        attach_transcript(dump)
    raise AssertionError(message)
