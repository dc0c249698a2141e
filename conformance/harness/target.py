"""The host under test as the checks see it: an address, options, and (for the reference host) a control channel."""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from conformance import catalog as catalog_mod
from conformance.reference.client import ActivationResult, BindOptions, RpcConnection, activate, build_request
from conformance.wire.messages import KmsRequest, filetime_now

# Editions the checks use for each protocol version (SKU ids, all present in the third-party captures).
SAMPLE_SKUS = {
    4: uuid.UUID("ae2ee509-1b34-41c0-acb7-6d4650168915"),  # Windows 7 Enterprise
    5: uuid.UUID("458e1bec-837a-45f6-b9d5-925ed5d299de"),  # Windows 8 Enterprise
    6: uuid.UUID("34e1ae55-27f8-4950-8877-7a03be5fb181"),  # Windows Server 2019 Datacenter
}


class ControlChannel:
    """JSON-lines test control of a reference host started with --control (loopback only)."""

    def __init__(self, call: Callable[[dict], dict]):
        self._call = call
        self.on_clock: Callable[[float], None] = lambda offset: None  # keeps the checks' clients in step

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 5.0) -> "ControlChannel":
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ValueError(f"the control channel is loopback-only, not {host}")

        def call(command: dict) -> dict:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(json.dumps(command).encode() + b"\n")
                return json.loads(sock.makefile("rb").readline())

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


@dataclass
class Target:
    host: str
    port: int
    timeout: float = 10.0
    profile: str = "microsoft"
    protocols: tuple[int, ...] = (4, 5, 6)
    key_group: str = "auto"
    activation_interval: int = 120
    renewal_interval: int = 10080
    embedded: bool = False
    control: ControlChannel | None = None
    catalog: catalog_mod.Catalog = field(default_factory=catalog_mod.load)
    # transcripts of every connection the current check made: its evidence (pcap, decoded exchanges)
    recorded: list[list[tuple[str, bytes]]] = field(default_factory=list)
    clock_offset: float = 0.0  # seconds the host's clock was advanced through the control channel

    @property
    def name(self) -> str:
        return f"{'embedded reference host ' if self.embedded else ''}{self.host}:{self.port}"

    def edition(self, key: str | uuid.UUID) -> catalog_mod.Edition:
        return self.catalog.edition(key)

    def sample_edition(self, protocol: int) -> catalog_mod.Edition:
        return self.catalog.edition(SAMPLE_SKUS[protocol])

    def request(self, protocol: int = 6, edition: catalog_mod.Edition | None = None, **fields: Any) -> KmsRequest:
        """A request as a client living on the host's (possibly advanced) clock would send it."""
        edition = edition or self.sample_edition(protocol)
        if self.clock_offset and "request_time" not in fields:
            fields["request_time"] = filetime_now() + int(self.clock_offset * 10**7)
        return build_request(edition, protocol=protocol, workstation=fields.pop("workstation", "kmsconf.test"), **fields)

    def activate(self, request: KmsRequest | None = None, options: BindOptions = BindOptions(),
                 protocol: int = 6) -> ActivationResult:
        result = activate(self.host, self.port, request or self.request(protocol), options, self.timeout)
        self.recorded.append(result.transcript)
        return result

    def connect(self) -> RpcConnection:
        conn = RpcConnection(self.host, self.port, self.timeout)
        self.recorded.append(conn.transcript)  # the same list object: it fills as the check runs
        return conn

    def alive(self) -> ActivationResult:
        """A valid activation: the sanity probe run before and after negative checks."""
        return self.activate(protocol=max(self.protocols))
