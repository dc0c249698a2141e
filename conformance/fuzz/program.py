"""One input of the fuzzer: PDUs on one or more connections, in the order they are sent, and how it runs.

Each step keeps the standard PDU it was made from (`base`: the seed's bind, alter_context or request), so a
finding can say how many bytes it changes and the minimiser can put bytes back. A program runs on asyncio
sessions, so several can be in flight; the rules are the single exchange's (`Runner.bind_then`), per
connection: a close, a silence or bytes that are no PDU end the connection, and so does a PDU shorter than
its frag_length (the connection is half-closed after it, as after each connection's last PDU); whatever
else the host answers, the next PDU goes.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from dataclasses import dataclass, replace
from pathlib import Path

from conformance.net.outcomes import Closed, Outcome, SentRequest, Silent, Undecodable, Unreachable
from conformance.net.runner import AsyncSession, whole_pdu
from conformance.wire import framing, rpc
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest

from .classes import FINDING_CLASSES, Run, fuzz_class, silence_class
from .mutators import BIND_FIELDS, HEADER_FIELDS, REQUEST_FIELDS

KINDS = {rpc.PType.BIND: "bind", rpc.PType.ALTER_CONTEXT: "alter_context", rpc.PType.REQUEST: "request"}
REQUEST_STUB = rpc.REQUEST_PDU_HEAD.size  # where a request's stub starts; the KMS payload follows NDR32's 8 or NDR64's 16 bytes


def pdu_kind(data: bytes) -> str:
    return KINDS.get(rpc.peek_ptype(data), "other") if len(data) > 2 else "other"


@dataclass(frozen=True)
class Step:
    connection: int
    data: bytes
    base: bytes  # the standard PDU this one was made from

    @property
    def kind(self) -> str:
        return pdu_kind(self.data)

    @property
    def ndr64(self) -> bool:
        """The request's stub reads as NDR64 (size, 4 bytes of padding, the size again on 8 bytes), so its KMS
        payload starts 8 bytes later: read from the bytes, which the minimiser changes."""
        data = self.data
        return (len(data) >= REQUEST_STUB + 16 and data[28:32] == bytes(4)
                and int.from_bytes(data[32:40], "little") == int.from_bytes(data[24:28], "little"))

    @property
    def payload_offset(self) -> int:
        return REQUEST_STUB + (16 if self.ndr64 else 8)

    @property
    def payload(self) -> bytes:
        """The KMS payload a request carries (as far as the bytes go)."""
        return self.data[self.payload_offset :]

    @property
    def changed_bytes(self) -> int:
        return sum(a != b for a, b in zip(self.data, self.base)) + abs(len(self.data) - len(self.base))

    def changes(self) -> list[str]:
        """What differs from the standard PDU: fields by name (the KMS request's too, decrypted), else bytes."""
        fields = {**HEADER_FIELDS, **{"request": REQUEST_FIELDS}.get(self.kind, BIND_FIELDS)}
        positions = [p for p, (a, b) in enumerate(zip(self.data, self.base)) if a != b]
        out = []
        kms = self.kind == "request" and self.base[2:3] == self.data[2:3] and _kms_changes(self)
        if self.kind == "request" and self.ndr64:  # the stub marshalled the other way: bytes compare as shifted
            out.append("NDR64 stub")
            positions = [p for p in positions if p < REQUEST_STUB]
            out += kms or []
        elif kms:  # the sealed payload's changes, read through the encryption
            out += kms
            positions = [p for p in positions if p < self.payload_offset]
        elif self.kind == "request":
            payload = [p for p in positions if p >= self.payload_offset]
            positions = [p for p in positions if p < self.payload_offset]
            out += [f"payload {_span(a - self.payload_offset, b - self.payload_offset)}" for a, b in _ranges(payload)]
        for name, (offset, fmt) in fields.items():
            size = struct.calcsize(fmt)
            if any(offset <= p < offset + size for p in positions) and len(self.data) >= offset + size:
                was, now = (struct.unpack_from("<" + fmt, d, offset)[0] for d in (self.base, self.data))
                out.append(f"{name} {was:#x}->{now:#x}")
                positions = [p for p in positions if not offset <= p < offset + size]
        out += [_span(first, last) for first, last in _ranges(positions)]
        if len(self.data) != len(self.base):
            out.append(f"{len(self.data)} bytes long (standard: {len(self.base)})")
        return out


def _span(first: int, last: int) -> str:
    return f"byte {first}" if first == last else f"bytes {first}-{last}"


def _ranges(positions: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for p in positions:
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [(a, b) for a, b in out]


def _kms_changes(step: Step) -> list[str]:
    """The KMS fields a request changes, when its payload and the standard one both open."""
    try:
        mine = framing.open_request(step.payload, allow_minor=True)
        standard = framing.open_request(step.base[REQUEST_STUB + 8 :], allow_minor=True)
    except DecodeError:
        return []
    if not mine.verified:
        return []
    return [f"kms.{f.name} {getattr(standard.request, f.name)!r}->{getattr(mine.request, f.name)!r}"
            for f in dataclasses.fields(KmsRequest) if getattr(mine.request, f.name) != getattr(standard.request, f.name)]


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]
    label: str = ""  # how it was made: the mutation or the sequence

    @classmethod
    def pair(cls, bind: bytes, request: bytes, base: tuple[bytes, bytes], label: str = "") -> "Program":
        """The single exchange: a bind, then a request, on one connection."""
        return cls((Step(0, bind, base[0]), Step(0, request, base[1])), label)

    @property
    def as_pair(self) -> tuple[bytes, bytes] | None:
        if len(self.steps) == 2 and all(s.connection == 0 for s in self.steps):
            return self.steps[0].data, self.steps[1].data
        return None

    @property
    def pdus(self) -> int:
        return len(self.steps)

    @property
    def connections(self) -> list[int]:
        return sorted({s.connection for s in self.steps})

    @property
    def changed_bytes(self) -> int:
        return sum(s.changed_bytes for s in self.steps)

    def describe(self) -> str:
        """Each PDU with what it changes, then the size: what a reader of a finding needs first."""
        pdus = "; ".join(f"c{s.connection} {s.kind}" + (f" [{', '.join(s.changes())}]" if s.changed_bytes else "")
                         for s in self.steps)
        return (f"{pdus} ({self.pdus} PDU(s) on {len(self.connections)} connection(s), {self.changed_bytes} byte(s) "
                f"changed from the standard PDUs)")

    def keeping(self, indices: list[int]) -> "Program":
        """These steps only, their connections numbered again from 0 in the order they open."""
        kept = [self.steps[i] for i in indices]
        numbers: dict[int, int] = {}
        for step in kept:
            numbers.setdefault(step.connection, len(numbers))
        return replace(self, steps=tuple(replace(s, connection=numbers[s.connection]) for s in kept))

    def with_data(self, index: int, data: bytes) -> "Program":
        steps = list(self.steps)
        steps[index] = replace(steps[index], data=data)
        return replace(self, steps=tuple(steps))

    def to_json(self) -> dict:
        return {"label": self.label, "steps": [{"connection": s.connection, "kind": s.kind, "data": s.data.hex(),
                                                "base": s.base.hex()} for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict) -> "Program":
        return cls(tuple(Step(int(s["connection"]), bytes.fromhex(s["data"]), bytes.fromhex(s.get("base", "")))
                         for s in data["steps"]), data.get("label", ""))


def load(path: Path) -> Program:
    """A finding's input: its JSON (beside the pcap), else each connection of a pcap as whole PDUs, in order."""
    from conformance.pcap.reader import read_connections

    record = path.with_suffix(".json")
    if record.exists():
        return Program.from_json(json.loads(record.read_text(encoding="utf-8"))["input"])
    steps = []
    for n, conn in enumerate(read_connections(path)):
        data, pos = conn.client_stream, 0
        while pos < len(data):
            size = rpc.peek_frag_length(data[pos:]) if len(data) - pos >= rpc.HEADER_SIZE else 0
            size = size if rpc.HEADER_SIZE <= size <= len(data) - pos else len(data) - pos
            steps.append(Step(n, data[pos : pos + size], data[pos : pos + size]))
            pos += size
    if not steps:
        raise ValueError(f"{path}: no client bytes to send")
    return Program(tuple(steps), f"replayed from {path.name}")


def _ends_connection(outcome: Outcome) -> bool:
    return isinstance(outcome, (Closed, Silent, Undecodable, Unreachable))


async def run_program(program: Program, host: str, port: int, timeout: float) -> Run:
    """Every step in order, each waiting for its answer; the class of the first answer that is a finding by
    itself, else of the last answer."""
    started = time.perf_counter()
    sessions: dict[int, AsyncSession] = {}
    ended: set[int] = set()
    last = {s.connection: i for i, s in enumerate(program.steps)}
    chosen: tuple[str, str, Outcome] | None = None
    try:
        for i, step in enumerate(program.steps):
            if step.connection in ended:
                continue
            session = sessions.get(step.connection)
            if session is None:
                try:
                    session = sessions[step.connection] = await AsyncSession.open(host, port, timeout)
                except (OSError, TimeoutError) as exc:
                    outcome = Unreachable(str(exc) or type(exc).__name__)
                    chosen = (*fuzz_class(outcome), outcome)
                    break
            whole = whole_pdu(step.data)
            sent = session.send(step.data)
            if i == last[step.connection] or not whole:
                session.half_close()
            expected = None
            if step.kind == "request":  # what opening the answer needs: the payload, the context's syntax
                cont_id = int.from_bytes(step.data[20:22], "little")
                # a context the host did not accept is answered, if at all, as NDR32 (as Runner.bind_then reads it)
                expected = SentRequest(None, step.payload, session.contexts.get(cont_id, False))
            outcome = await session.receive(expected) if sent else Closed("the host closed the connection before we sent")
            outcome_class, detail = fuzz_class(outcome, step.kind)
            if outcome_class == "timeout":
                outcome_class, detail = silence_class(session.transcript, detail)
            if chosen is None or chosen[0] not in FINDING_CLASSES:
                chosen = (outcome_class, detail, outcome)
            if not whole or _ends_connection(outcome):
                ended.add(step.connection)
    finally:
        for session in sessions.values():
            session.close()
    transcripts = [sessions[c].transcript for c in sorted(sessions)]
    outcome_class, detail, answer = chosen if chosen is not None else ("closed", "nothing was sent", None)
    return Run(outcome_class, detail, transcripts[0] if transcripts else [], time.perf_counter() - started,
               connections=transcripts, answer=answer)
