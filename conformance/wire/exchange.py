"""Decode one TCP connection's two PDU streams into KMS exchanges.

Tracks which presentation contexts the host accepted (and with which transfer
syntax) so each request stub is read as NDR32 or NDR64, then pairs every client
PDU with the host PDU that answers it and decodes the KMS payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import framing, hresult, ndr, rpc
from .layout import IV
from .errors import DecodeError
from .messages import datetime_from_filetime, peek_version


def iso_time(filetime: int) -> str:
    """ISO 8601 UTC; a FILETIME past 9999-12-31 (any 64-bit value can arrive) is shown as its raw number."""
    try:
        return datetime_from_filetime(filetime).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:
        return f"FILETIME {filetime} (after 9999-12-31)"


def request_fields(opened: framing.OpenedRequest) -> dict[str, Any]:
    r = opened.request
    return {
        "version": f"{r.major}.{r.minor}",
        "vm": r.vm,
        "license_status": r.license_status,
        "binding_expiration": r.binding_expiration,
        "app_id": str(r.app_id),
        "sku_id": str(r.sku_id),
        "kms_id": str(r.kms_id),
        "cmid": str(r.cmid),
        "previous_cmid": str(r.previous_cmid),
        "request_time": iso_time(r.request_time),
        "workstation": r.workstation,
        "n_policy": r.n_policy,
        "checks": dict(opened.checks),
    }


def response_fields(opened: framing.OpenedResponse) -> dict[str, Any]:
    r = opened.response
    out: dict[str, Any] = {
        "version": f"{r.major}.{r.minor}",
        "epid": r.epid,
        "cmid": str(r.cmid),
        "request_time": iso_time(r.request_time),
        "count": r.count,
        "activation_interval": r.activation_interval,
        "renewal_interval": r.renewal_interval,
        "verified": opened.verified,
        "checks": dict(opened.checks),
    }
    if opened.major == 6:
        out["hwid"] = opened.hwid.hex().upper()
    return out


def unread_fields(payload: bytes | None, errors: list[str], side: str) -> dict[str, Any] | None:
    """What a payload that does not open still shows in clear: its version, lengths, IV, bytes, and why."""
    if payload is None:
        return None
    out: dict[str, Any] = {"payload_length": len(payload)}
    if len(payload) >= 4:
        major, minor = peek_version(payload)
        out["version"] = f"{major}.{minor}"
        if major in (5, 6) or major not in framing.SUPPORTED_MAJORS:
            out["iv_if_encrypted"] = payload[IV].hex() if len(payload) >= IV.stop else None
            out["encrypted_length"] = max(len(payload) - IV.stop, 0)
    out["payload"] = payload.hex()
    out["error"] = "; ".join(e.removeprefix(f"{side}: ") for e in errors if e.startswith(f"{side}:")) or None
    return out


@dataclass
class Exchange:
    """One client PDU and the host's answer, decoded as far as they go."""

    client_pdu: bytes
    host_pdu: bytes | None = None
    client: rpc.Pdu | None = None
    host: rpc.Pdu | None = None
    ndr64: bool = False
    request: framing.OpenedRequest | None = None
    response: framing.OpenedResponse | None = None
    hresult: int | None = None
    errors: list[str] = field(default_factory=list)
    request_payload: bytes | None = None  # the KMS payload as sent, kept when it does not open
    response_payload: bytes | None = None

    @property
    def is_kms(self) -> bool:
        return isinstance(self.client, rpc.Request)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ndr": 64 if self.ndr64 else 32}
        if self.client is not None:
            out["call_id"] = self.client.header.call_id
        if self.request is not None:
            out["request"] = request_fields(self.request)
        else:
            out["request"] = unread_fields(self.request_payload, self.errors, "request")
        if self.response is not None:
            out["response"] = response_fields(self.response)
        elif self.hresult is not None:
            out["response"] = {"hresult": f"0x{self.hresult:08X}", "hresult_name": hresult.name(self.hresult)}
        elif isinstance(self.host, rpc.Fault):
            out["response"] = {"fault": f"0x{self.host.status:08X}", "fault_name": hresult.name(self.host.status)}
        else:
            out["response"] = unread_fields(self.response_payload, self.errors, "response")
        if self.errors:
            out["errors"] = list(self.errors)
        return out


@dataclass
class Connection:
    """RPC state of one connection, seen from outside (a decoder or a client)."""

    # accepted presentation contexts: cont_id -> is NDR64
    contexts: dict[int, bool] = field(default_factory=dict)
    pending_bind: rpc.Bind | None = None

    def note_bind(self, bind: rpc.Bind) -> None:
        self.pending_bind = bind

    def note_bind_ack(self, ack: rpc.BindAck) -> None:
        if self.pending_bind is None:
            return
        for ctx, result in zip(self.pending_bind.contexts, ack.results):
            if result.result == rpc.ACCEPTANCE:
                self.contexts[ctx.cont_id] = result.transfer == rpc.NDR64
        self.pending_bind = None

    def syntax_of(self, cont_id: int) -> bool | None:
        return self.contexts.get(cont_id)


def decode_kms(exchange: Exchange, conn: Connection) -> None:
    """Fill the KMS part of an exchange whose client PDU is a request."""
    req = exchange.client
    assert isinstance(req, rpc.Request)
    ndr64 = conn.syntax_of(req.cont_id)
    if ndr64 is None:
        exchange.errors.append(f"request on context {req.cont_id}, which the host never accepted")
        ndr64 = False
    exchange.ndr64 = ndr64
    try:
        payload = ndr.decode_request_stub(req.stub, ndr64)
        exchange.request_payload = payload
        exchange.request = framing.open_request(payload, allow_minor=True)
    except DecodeError as exc:
        exchange.errors.append(f"request: {exc}")
    host = exchange.host
    if not isinstance(host, rpc.Response):
        return
    try:
        body, code = ndr.decode_response_stub(host.stub, ndr64)
    except DecodeError as exc:
        exchange.errors.append(f"response: {exc}")
        return
    if code or body is None:
        exchange.hresult = code
    if body is None:
        return  # a refusal
    exchange.response_payload = body
    if exchange.request is None:
        exchange.errors.append("response: not opened: the request it answers did not open")
        return
    try:
        exchange.response = framing.open_response(body, exchange.request.iv)
    except DecodeError as exc:
        exchange.errors.append(f"response: {exc}")


def decode_connection(client_pdus: list[bytes], host_pdus: list[bytes]) -> list[Exchange]:
    """Pair the n-th client PDU with the n-th host PDU (KMS is strictly request/answer)."""
    conn = Connection()
    exchanges = []
    for i, raw in enumerate(client_pdus):
        ex = Exchange(raw, host_pdus[i] if i < len(host_pdus) else None)
        try:
            ex.client = rpc.decode_pdu(raw)
        except DecodeError as exc:
            ex.errors.append(f"client PDU: {exc}")
        if ex.host_pdu is not None:
            try:
                ex.host = rpc.decode_pdu(ex.host_pdu)
            except DecodeError as exc:
                ex.errors.append(f"host PDU: {exc}")
        if isinstance(ex.client, rpc.Bind):
            conn.note_bind(ex.client)
            if isinstance(ex.host, rpc.BindAck):
                conn.note_bind_ack(ex.host)
        elif isinstance(ex.client, rpc.Request):
            decode_kms(ex, conn)
        exchanges.append(ex)
    return exchanges

