"""What a KMS host did with what it was sent, as types: the one classifier of the code base.

Every exchange ends in exactly one outcome: a KMS `Response` (opened and verified, or not,
with the problems), a `Refusal` (the failure stub's HRESULT), an RPC `Fault`, a `BindAck`,
`AlterContextResp` or `BindNak`, `Closed` (the host hung up), `Silent` (no answer within the
timeout), `Undecodable` bytes, or `Unreachable` (no connection at all). A check states which
outcomes a clause accepts as patterns (`"Fault"`, `"Fault(0x1C010002)"`, `"Refusal(0x8007000D)"`),
which `clauses.toml` can hold as data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from conformance.wire import framing, hresult, ndr, rpc
from conformance.wire.epid import Epid
from conformance.wire.exchange import request_fields, response_fields
from conformance.wire.layout import IV
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest, peek_version


class Outcome:
    """Base of every outcome; `label` is the stable text patterns and deviation files match."""

    kind: ClassVar[str] = "Outcome"

    @property
    def argument(self) -> str | None:
        return None

    @property
    def label(self) -> str:
        return f"{self.kind}({self.argument})" if self.argument is not None else self.kind

    def describe(self) -> str:
        """One readable line for a console."""
        return self.label

    def matches(self, pattern: str) -> bool:
        kind, argument = parse_pattern(pattern)
        return kind == self.kind and (argument is None or _same_argument(argument, self.argument))

    @property
    def is_kms_answer(self) -> bool:
        """A well-formed KMS answer (a response that opens, or a refusal): what a live host gives."""
        return False


def _hex(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08X}"


def _same_argument(pattern: str, actual: str | None) -> bool:
    if actual is None:
        return False
    try:
        return int(pattern, 0) == int(actual, 0)
    except ValueError:
        return pattern.casefold() == actual.casefold()


_PATTERN = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


def parse_pattern(pattern: str) -> tuple[str, str | None]:
    match = _PATTERN.match(pattern)
    if not match or match.group(1) not in KINDS:
        raise ValueError(f"outcome pattern {pattern!r}: write one of {', '.join(KINDS)}, optionally with its "
                         f"code in parentheses, e.g. Fault(0x1C010002)")
    return match.group(1), match.group(2) or None


def matches_any(outcome: Outcome, patterns: Iterable[str]) -> bool:
    return any(outcome.matches(p) for p in patterns)


@dataclass(frozen=True)
class Response(Outcome):
    """An RPC response carrying a KMS payload (not a failure stub)."""

    kind: ClassVar[str] = "Response"
    pdu: rpc.Response
    opened: framing.OpenedResponse | None = None  # None: the payload did not decode
    problems: tuple[str, ...] = ()
    payload: bytes = b""  # the KMS payload, as sent (its first 4 bytes: the clear version)
    problem_kinds: frozenset[str] = frozenset()  # what kind of rule each problem breaks (cmid, hmac, call_id...)

    @property
    def clear_version(self) -> tuple[int, int] | None:
        return peek_version(self.payload) if len(self.payload) >= 4 else None

    @property
    def verified(self) -> bool:
        return self.opened is not None and not self.problems

    @property
    def is_kms_answer(self) -> bool:
        return self.opened is not None

    def describe(self) -> str:
        if self.opened is None:
            return f"a response that does not decode ({'; '.join(self.problems)})"
        r = self.opened.response
        state = "verified" if self.verified else f"NOT verified: {'; '.join(self.problems)}"
        return f"a V{r.major}.{r.minor} response, count {r.count} ({state})"


@dataclass(frozen=True)
class Refusal(Outcome):
    """A KMS failure stub: no payload, an HRESULT."""

    kind: ClassVar[str] = "Refusal"
    hresult: int
    pdu: rpc.Response | None = None

    @property
    def argument(self) -> str:
        return _hex(self.hresult)

    @property
    def is_kms_answer(self) -> bool:
        return True

    def describe(self) -> str:
        return f"refusal {hresult.describe(self.hresult)}"


@dataclass(frozen=True)
class Fault(Outcome):
    kind: ClassVar[str] = "Fault"
    status: int
    pdu: rpc.Fault | None = None

    @property
    def argument(self) -> str:
        return _hex(self.status)

    def describe(self) -> str:
        return f"fault {hresult.describe(self.status)}"


@dataclass(frozen=True)
class BindAck(Outcome):
    kind: ClassVar[str] = "BindAck"
    pdu: rpc.BindAck

    def describe(self) -> str:
        return f"bind_ack (results {_results(self.pdu)})"


@dataclass(frozen=True)
class AlterContextResp(Outcome):
    kind: ClassVar[str] = "AlterContextResp"
    pdu: rpc.BindAck

    def describe(self) -> str:
        return f"alter_context_resp (results {_results(self.pdu)})"


def _results(pdu: rpc.BindAck) -> str:
    """result/reason per presentation context."""
    return ", ".join(f"{r.result}/{r.reason}" for r in pdu.results) or "none"


@dataclass(frozen=True)
class BindNak(Outcome):
    kind: ClassVar[str] = "BindNak"
    reason: int
    pdu: rpc.BindNak | None = None

    @property
    def argument(self) -> str:
        return str(self.reason)

    def describe(self) -> str:
        return f"bind_nak, reason {self.reason}"


@dataclass(frozen=True)
class Closed(Outcome):
    kind: ClassVar[str] = "Closed"
    detail: str = "the host closed the connection"

    def describe(self) -> str:
        return f"connection closed ({self.detail})"


@dataclass(frozen=True)
class Silent(Outcome):
    kind: ClassVar[str] = "Silent"
    seconds: float = 0.0

    def describe(self) -> str:
        return f"no answer within {self.seconds:g} s (connection left open)"


@dataclass(frozen=True)
class Undecodable(Outcome):
    kind: ClassVar[str] = "Undecodable"
    error: str = ""
    data: bytes = b""

    def describe(self) -> str:
        return f"an answer that is no RPC PDU ({self.error})"


@dataclass(frozen=True)
class Unreachable(Outcome):
    kind: ClassVar[str] = "Unreachable"
    error: str = ""

    def describe(self) -> str:
        return f"no connection ({self.error})"


@dataclass(frozen=True)
class OtherPdu(Outcome):
    """A well-formed PDU of a type no host sends as an answer (request, bind, ...)."""

    kind: ClassVar[str] = "OtherPdu"
    ptype: int = 0

    @property
    def argument(self) -> str:
        return str(self.ptype)

    def describe(self) -> str:
        return f"a PDU of type {self.ptype}"


KINDS = {cls.kind: cls for cls in (Response, Refusal, Fault, BindAck, AlterContextResp, BindNak, Closed, Silent,
                                    Undecodable, Unreachable, OtherPdu)}


@dataclass(frozen=True)
class SentRequest:
    """What classify() needs to open and check the answer to a KMS request."""

    request: KmsRequest | None
    payload: bytes
    ndr64: bool = False
    call_id: int | None = None

    @property
    def iv(self) -> bytes:
        major = self.request.major if self.request is not None else (peek_version(self.payload)[0] if len(self.payload) >= 4 else None)
        return bytes(self.payload[IV]) if major in (5, 6) and len(self.payload) >= IV.stop else b""


def response_problems(sent: SentRequest, opened: framing.OpenedResponse) -> list[tuple[str, str]]:
    """What vlmcs and a Windows client check in a response (PROTOCOL.md 3.3, C4): (kind, readable problem)."""
    problems = [(name, f"{name} check failed") for name in opened.failed_checks()]
    request, r = sent.request, opened.response
    if request is None:
        return problems
    if r.version != request.version:
        problems.append(("version", f"response version {r.major}.{r.minor} differs from request "
                                    f"{request.major}.{request.minor}"))
    if r.cmid != request.cmid:
        problems.append(("cmid", f"CMID echo {r.cmid} differs from request {request.cmid}"))
    if r.request_time != request.request_time:
        problems.append(("request_time", f"request time echo {r.request_time} differs from request "
                                         f"{request.request_time}"))
    try:
        Epid.parse(r.epid)
    except DecodeError as exc:
        problems.append(("epid", str(exc)))
    if request.major == 6 and opened.iv == sent.iv:
        problems.append(("iv_reuse", "V6 response IV equals the request IV (an emulator tell)"))
    return problems


def classify(answer: bytes | None, *, sent: SentRequest | None = None, timed_out: float | None = None,
             closed_detail: str = "") -> Outcome:
    """The outcome of one exchange: `answer` is the host's PDU, None when it closed, `timed_out` when it was silent."""
    if timed_out is not None:
        return Silent(timed_out)
    if answer is None:
        return Closed(closed_detail or "the host closed the connection")
    try:
        pdu = rpc.decode_pdu(answer)
    except DecodeError as exc:
        return Undecodable(str(exc), answer)
    if isinstance(pdu, rpc.Fault):
        return Fault(pdu.status, pdu)
    if isinstance(pdu, rpc.BindNak):
        return BindNak(pdu.reason, pdu)
    if isinstance(pdu, rpc.BindAck):
        return AlterContextResp(pdu) if pdu.header.ptype == rpc.PType.ALTER_CONTEXT_RESP else BindAck(pdu)
    if not isinstance(pdu, rpc.Response):
        return OtherPdu(pdu.header.ptype)
    return _kms_answer(pdu, sent or SentRequest(None, b""))


def _kms_answer(pdu: rpc.Response, sent: SentRequest) -> Outcome:
    problems: list[tuple[str, str]] = []
    if sent.call_id is not None and pdu.header.call_id != sent.call_id:
        problems.append(("call_id", f"response call_id {pdu.header.call_id} differs from request {sent.call_id}"))
    try:
        body, code = ndr.decode_response_stub(pdu.stub, sent.ndr64)
    except DecodeError as exc:
        return _response(pdu, None, problems + [("stub", f"response stub does not decode: {exc}")])
    if body is None:
        return Refusal(code, pdu)
    try:
        opened = framing.open_response(body, sent.iv)
    except DecodeError as exc:
        return _response(pdu, None, problems + [("payload", f"response payload does not decode: {exc}")], body)
    return _response(pdu, opened, problems + response_problems(sent, opened), body)


def _response(pdu: rpc.Response, opened: framing.OpenedResponse | None, problems: list[tuple[str, str]],
              body: bytes = b"") -> Response:
    return Response(pdu, opened, tuple(text for _, text in problems), body, frozenset(kind for kind, _ in problems))


@dataclass
class Activation:
    """One activation attempt: the request, the step it ended at, and that step's outcome."""

    request: KmsRequest
    payload: bytes
    outcome: Outcome
    stage: str = "request"  # connect | bind | alter_context | request
    ndr64: bool = False
    opened_request: framing.OpenedRequest | None = None
    transcript: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return isinstance(self.outcome, Response) and self.outcome.verified

    @property
    def response(self) -> framing.OpenedResponse | None:
        return self.outcome.opened if isinstance(self.outcome, Response) else None

    @property
    def hresult(self) -> int | None:
        return self.outcome.hresult if isinstance(self.outcome, Refusal) else None

    @property
    def count(self) -> int | None:
        return self.response.response.count if self.response is not None else None

    @property
    def problems(self) -> list[str]:
        if isinstance(self.outcome, Response):
            return list(self.outcome.problems)
        return [f"{self.stage}: {self.outcome.describe()}"]

    @property
    def activated(self) -> bool:
        return self.verified and self.response.response.count >= self.request.n_policy

    def describe(self) -> str:
        prefix = "" if self.stage == "request" else f"at {self.stage}: "
        return prefix + self.outcome.describe()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": request_fields(self.opened_request) if self.opened_request else None}
        if self.response is not None:
            out["response"] = response_fields(self.response) | {"verified": self.verified}
        elif isinstance(self.outcome, Refusal):
            out["response"] = {"hresult": _hex(self.outcome.hresult), "hresult_name": hresult.name(self.outcome.hresult)}
        elif isinstance(self.outcome, Fault):
            out["response"] = {"fault": _hex(self.outcome.status), "fault_name": hresult.name(self.outcome.status)}
        else:
            out["response"] = None
        out["outcome"] = self.outcome.label
        out["ndr"] = 64 if self.ndr64 else 32
        out["activated"] = self.activated
        out["problems"] = self.problems
        return out
