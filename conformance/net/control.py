"""The test-control channel of a reference host started with --control: JSON lines over loopback TCP."""

from __future__ import annotations

import json
import socket
from typing import Callable

from .address import format_address, is_loopback


class ControlChannel:
    """JSON-lines test control of a reference host started with --control (loopback only)."""

    def __init__(self, call: Callable[[dict], dict]):
        self._call = call
        self.on_clock: Callable[[float], None] = lambda offset: None  # keeps the checks' clients in step

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 5.0) -> "ControlChannel":
        if not is_loopback(host):
            raise ValueError(f"the control channel is loopback-only, not {host}")

        def call(command: dict) -> dict:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(json.dumps(command).encode() + b"\n")
                line = sock.makefile("rb").readline()
            if not line:
                raise ConnectionError(f"{format_address(host, port)} closed without answering a control command")
            return json.loads(line)

        return cls(call)

    def advance(self, seconds: float) -> dict:
        answer = self._call({"op": "advance", "seconds": seconds})
        self.on_clock(answer["clock_offset"])
        return answer

    def reset(self) -> dict:
        """Empty client table, clock back to real time."""
        answer = self._call({"op": "reset"})
        self.on_clock(answer["clock_offset"])
        return answer

    def status(self) -> dict:
        return self._call({"op": "status"})["status"]

    def requests_answered(self) -> int:
        """KMS requests the controlled host has handled: tells whether a request reached this host."""
        return self._call({"op": "status"})["requests"]
