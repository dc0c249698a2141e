"""The fuzzer's classes of outcomes, and what one execution of an input gave.

Classes: response (a KMS answer), error (failure stub with an HRESULT), fault, bind_nak, bind_ack (the answer
to a bind or alter_context; bind_other: another PDU answering one), closed (connection closed by the host),
waiting (no answer, and none owed: see `owes_answer`), timeout (no answer to a PDU the host owes one), dead (no
connection, or no KMS answer on a fresh one after a close or a silence), hang (the same under the process
monitor: the process lives but serves nobody), violation (an answer that breaks a rule: a response whose
integrity does not verify, or an answer of the wrong PDU type). The runner's `classify` turns bytes into
outcomes; this maps outcomes to classes.

The oracles, each such that a host that keeps the rules never trips it: crash and report come from the
process monitor (a signal, a sanitizer's or runtime's report); hang and dead need a fresh connection that gets
no KMS answer either, since one connection left waiting shows nothing about the host; timeout needs a PDU the
host had every byte of and owed an answer, while it still serves others; violation needs an answer that breaks
a rule. An inferred one (timeout, dead, hang) is a finding only when its input alone does it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.net.outcomes import (AlterContextResp, BindAck, BindNak, Closed, Fault, OtherPdu, Outcome, Refusal,
                                      Response, Silent, Unreachable)
from conformance.net.runner import Transcript
from conformance.wire import rpc

# classes that are findings by themselves (a crash or a sanitizer report comes from the process monitor)
FINDING_CLASSES = ("violation", "timeout", "dead")
SILENCES = ("timeout", "waiting")  # no answer on the connection: a fresh one tells a hang from a wait
OWED = frozenset({rpc.PType.REQUEST, rpc.PType.BIND, rpc.PType.ALTER_CONTEXT})  # each has its answer (C706 12.6.4)


def owes_answer(sent: bytes) -> bool:
    """Do the bytes a client sent on one connection end with a PDU its host must answer?

    Over TCP, frag_length alone frames DCE/RPC PDUs (C706 12.6.1: no resynchronisation), so a host has the
    last PDU whole only where the frag_lengths add up to the bytes sent; short of that it may wait for the rest
    (its own limits end the wait). A whole PDU is owed an answer (a reply, a fault, a bind_nak, or a close)
    when it is DCE/RPC 5.x, its last fragment, and a bind, an alter_context or a request; any other type a host
    may ignore (PROTOCOL.md 2.8, KMS-ROB-003)."""
    pos, last = 0, b""
    while len(sent) - pos >= rpc.HEADER_SIZE:
        frag = rpc.peek_frag_length(sent[pos:])
        if frag < rpc.HEADER_SIZE or pos + frag > len(sent):
            return False  # still reading a PDU, or none it can frame (a host may close, or wait for its limit)
        last, pos = sent[pos:pos + frag], pos + frag
    if pos != len(sent) or not last:
        return False
    vers, vers_minor, ptype, flags, *_ = rpc.HEADER.unpack_from(last)
    return vers == 5 and vers_minor in (0, 1) and ptype in OWED and bool(flags & rpc.PFC_LAST_FRAG)


def silence_class(transcript: list[tuple[str, bytes]], detail: str) -> tuple[str, str]:
    """A connection's silence as timeout (an answer was owed) or waiting (none was)."""
    if owes_answer(b"".join(data for side, data in transcript if side == "client")):
        return "timeout", detail
    return "waiting", f"{detail}; none owed: the bytes sent end inside a PDU or with one a host may ignore"


def fuzz_class(outcome: Outcome, answering: str = "request") -> tuple[str, str]:
    """The campaign's class and detail for the runner's outcome of one exchange; `answering` is the kind of
    PDU it answers (an acknowledgement is right for a bind or an alter_context, a violation for a request)."""
    if answering in ("bind", "alter_context"):
        if isinstance(outcome, (BindAck, AlterContextResp)):
            return "bind_ack", outcome.describe()
        if isinstance(outcome, (Response, Refusal, OtherPdu)):  # judged by what the host does next, as bind_then
            return "bind_other", outcome.describe()
    if isinstance(outcome, Response):
        if outcome.opened is None:
            return "violation", outcome.describe()
        if not outcome.opened.verified:
            return "violation", f"response fails {', '.join(outcome.opened.failed_checks())}"
        return "response", f"count {outcome.opened.response.count}"
    if isinstance(outcome, Refusal):
        return "error", f"HRESULT 0x{outcome.hresult:08X}"
    if isinstance(outcome, Fault):
        return "fault", outcome.describe()
    if isinstance(outcome, BindNak):
        return "bind_nak", f"reason {outcome.reason}"
    if isinstance(outcome, Closed):
        return "closed", outcome.detail
    if isinstance(outcome, Silent):
        return "timeout", outcome.describe()
    if isinstance(outcome, Unreachable):
        return "dead", outcome.describe()
    # a bind_ack or any other PDU answering a request, or bytes that are no PDU
    return "violation", outcome.describe()




@dataclass
class Run:
    outcome: str
    detail: str
    transcript: Transcript
    waited: float = 0.0  # seconds on the network: connecting, sending, waiting for answers
    connections: list[Transcript] | None = None  # one transcript per connection, when there were several
    answer: Outcome | None = None  # the outcome the class was taken from

    @property
    def transcripts(self) -> list[Transcript]:
        return self.connections if self.connections is not None else [self.transcript]
