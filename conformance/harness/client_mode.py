"""Client conformance: run a client under test against an instrumented reference host and record what it sends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from conformance.reference.host.rpc_session import Reply
from conformance.reference.host.service import KmsService
from conformance.wire import ndr, rpc
from conformance.wire.errors import DecodeError
from conformance.wire.messages import peek_version

from .client_process import fill, run_process


@dataclass
class RecordedPdu:
    peer: str
    data: bytes
    pdu: rpc.Pdu | None
    reply: Reply
    received: float  # host clock when it arrived

    @property
    def clear_version(self) -> tuple[int, int] | None:
        """The request payload's clear version (its first four bytes), opened or not: NDR32's stub, else NDR64's."""
        if not isinstance(self.pdu, rpc.Request):
            return None
        for ndr64 in (False, True):
            try:
                payload = ndr.decode_request_stub(self.pdu.stub, ndr64)
            except DecodeError:
                continue
            if len(payload) >= 4:
                return peek_version(payload)
        return None


@dataclass
class ClientRun:
    command: str
    returncode: int
    stdout: str
    stderr: str
    pdus: list[RecordedPdu] = field(default_factory=list)
    address: tuple[str, int] = ("127.0.0.1", 1688)  # the instrumented host the client talked to
    hung: bool = False  # killed after its time limit

    @property
    def request_pdus(self) -> list[RecordedPdu]:
        """Every request PDU the client sent, whether the host could open its payload or not."""
        return [p for p in self.pdus if isinstance(p.pdu, rpc.Request)]

    @property
    def requests(self) -> list[RecordedPdu]:
        """KMS requests whose payload the host could open (outcome carries the decoded request)."""
        return [p for p in self.pdus if isinstance(p.pdu, rpc.Request) and p.reply.decision is not None
                and p.reply.decision.opened is not None]

    def transcripts(self) -> list[list[tuple[str, bytes]]]:
        """One transcript per connection the client opened."""
        return [self.transcript(peer) for peer in dict.fromkeys(p.peer for p in self.pdus)]

    def transcript(self, peer: str | None = None) -> list[tuple[str, bytes]]:
        out = []
        for p in self.pdus:
            if peer is None or p.peer == peer:
                out.append(("client", p.data))
                if p.reply.data:
                    out.append(("host", p.reply.data))
        return out


def recording(thread: HostThread) -> list[RecordedPdu]:
    """Every PDU the host's clients send from now on, with the host's reply, as it arrives."""
    recorded: list[RecordedPdu] = []

    def on_pdu(peer: str, data: bytes, reply: Reply) -> None:
        try:
            pdu = rpc.decode_pdu(data)
        except DecodeError:
            pdu = None
        recorded.append(RecordedPdu(peer, data, pdu, reply, thread.host.clock()))

    thread.host.on_pdu = on_pdu
    return recorded


def run_client(command: str, timeout: float = 60.0, config: HostConfig | None = None,
               service: KmsService | None = None) -> ClientRun:
    """Start a reference host on loopback (with `service`: an instrumented one), run `command` with {host} and
    {port} filled in, record every PDU."""
    thread = HostThread(config or HostConfig(port=0), service=service)
    host, port = thread.start()
    recorded = recording(thread)
    try:
        argv = fill(command, host=host, port=port)
        try:
            process = run_process(argv, timeout)
        except FileNotFoundError:
            raise ValueError(f"--client-cmd: {argv[0]!r} not found") from None
        time.sleep(0.05)  # let the host's loop finish logging the last PDU
        if process.hung:
            return ClientRun(command, -1, process.stdout, f"timed out after {timeout:g} s", list(recorded),
                             (host, port), hung=True)
        return ClientRun(command, process.returncode, process.stdout, process.stderr, list(recorded), (host, port))
    finally:
        thread.stop()
