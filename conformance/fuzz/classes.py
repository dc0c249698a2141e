"""The fuzzer's classes of outcomes, and what one execution of an input gave.

Classes: response (a KMS answer), error (failure stub with an HRESULT), fault, bind_nak, bind_ack (the answer
to a bind or alter_context; bind_other: another PDU answering one), closed (connection closed by the host), timeout (no answer), dead (no
connection), violation (an answer that breaks a rule: a response whose integrity does not verify, or an
answer of the wrong PDU type). The runner's `classify` turns bytes into outcomes; this maps outcomes to classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.net.outcomes import (AlterContextResp, BindAck, BindNak, Closed, Fault, OtherPdu, Outcome, Refusal,
                                      Response, Silent, Unreachable)

# classes that are findings by themselves (a crash or a sanitizer report comes from the process monitor)
FINDING_CLASSES = ("violation", "timeout", "dead")


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


Transcript = list[tuple[str, bytes]]


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
