"""DCE/RPC connection-oriented PDUs as KMS uses them (PROTOCOL.md 2).

Each PDU is a dataclass with `encode()`; `decode_pdu()` turns bytes back into the
same object. Header fields that KMS never varies (version, drep, auth_length)
are kept as fields so a decoder can report what a peer really sent.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import DecodeError

DREP_LE = b"\x10\x00\x00\x00"

PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
PFC_CONC_MPX = 0x10
PFC_DID_NOT_EXECUTE = 0x20
FIRST_LAST = PFC_FIRST_FRAG | PFC_LAST_FRAG

KMS_INTERFACE = uuid.UUID("51c82175-844e-4750-b0d8-ec255555bc06")
KMS_INTERFACE_VERSION = (1, 0)
NDR32 = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")
NDR64 = uuid.UUID("71710533-beba-4937-8319-b5dbef9ccc36")
TRANSFER_VERSIONS = {NDR32: 2, NDR64: 1}
BTFN_PREFIX = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]
BTFN_FEATURES = 0x0003  # security-context multiplexing | keep connection on orphan
DEFAULT_FRAG = 5840

# result codes and reasons of a presentation-context result (PROTOCOL.md 2.4)
ACCEPTANCE, USER_REJECTION, PROVIDER_REJECTION, NEGOTIATE_ACK = 0, 1, 2, 3
REASON_NOT_SPECIFIED, REASON_ABSTRACT_SYNTAX, REASON_TRANSFER_SYNTAXES, REASON_LOCAL_LIMIT = 0, 1, 2, 3
BIND_NAK_PROTOCOL_VERSION = 4


class PType(IntEnum):
    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15


# The PDU's common header (PROTOCOL.md 2.1) and the request / response body heads after it (2.5), described
# here once: every struct, size and offset of them (the host's fast path, the fuzzer's mutators) comes from these.
HEADER_LAYOUT = (("vers", "B"), ("vers_minor", "B"), ("ptype", "B"), ("flags", "B"), ("drep", "4s"),
                 ("frag_length", "H"), ("auth_length", "H"), ("call_id", "I"))
REQUEST_LAYOUT = (("alloc_hint", "I"), ("cont_id", "H"), ("opnum", "H"))
RESPONSE_LAYOUT = (("alloc_hint", "I"), ("cont_id", "H"), ("cancel_count", "B"), ("reserved", "B"))


def _struct(*layouts: tuple[tuple[str, str], ...]) -> struct.Struct:
    return struct.Struct("<" + "".join(code for layout in layouts for _, code in layout))


def _offsets(layout: tuple[tuple[str, str], ...], start: int = 0) -> dict[str, tuple[int, str]]:
    """field -> (offset in the PDU, struct code)"""
    fields, pos = {}, start
    for name, code in layout:
        fields[name] = (pos, code)
        pos += struct.calcsize("<" + code)
    return fields


HEADER = _struct(HEADER_LAYOUT)
HEADER_SIZE = HEADER.size
HEADER_FIELDS = _offsets(HEADER_LAYOUT)
REQUEST_HEAD = _struct(REQUEST_LAYOUT)
RESPONSE_HEAD = _struct(RESPONSE_LAYOUT)
REQUEST_FIELDS = _offsets(REQUEST_LAYOUT, HEADER_SIZE)
RESPONSE_FIELDS = _offsets(RESPONSE_LAYOUT, HEADER_SIZE)
# header and body head in one struct: a request decoded, or a response packed, in one call
REQUEST_PDU_HEAD = _struct(HEADER_LAYOUT, REQUEST_LAYOUT)
RESPONSE_PDU_HEAD = _struct(HEADER_LAYOUT, RESPONSE_LAYOUT)
_FRAG_LENGTH = struct.Struct("<H")
_FRAG_OFFSET = HEADER_FIELDS["frag_length"][0]
_PTYPE_OFFSET = HEADER_FIELDS["ptype"][0]


def peek_frag_length(data: bytes) -> int:
    return _FRAG_LENGTH.unpack_from(data, _FRAG_OFFSET)[0]


def set_frag_length(pdu: bytearray, length: int) -> None:
    _FRAG_LENGTH.pack_into(pdu, _FRAG_OFFSET, length)


def peek_ptype(data: bytes) -> int:
    return data[_PTYPE_OFFSET]


def set_ptype(pdu: bytearray, ptype: int) -> None:
    pdu[_PTYPE_OFFSET] = ptype


def btfn_uuid(features: int = BTFN_FEATURES) -> uuid.UUID:
    return uuid.UUID(bytes_le=BTFN_PREFIX + struct.pack("<H", features) + bytes(6))


def btfn_features(syntax: uuid.UUID) -> int | None:
    """The feature bitmask of a bind-time feature negotiation syntax, or None if it is not one."""
    raw = syntax.bytes_le
    if raw[:8] != BTFN_PREFIX or raw[10:] != bytes(6):
        return None
    return struct.unpack_from("<H", raw, 8)[0]


@dataclass
class Header:
    ptype: int
    flags: int = FIRST_LAST
    call_id: int = 2
    vers: int = 5
    vers_minor: int = 0
    drep: bytes = DREP_LE
    auth_length: int = 0

    def encode(self, frag_length: int) -> bytes:
        return HEADER.pack(self.vers, self.vers_minor, self.ptype, self.flags, self.drep, frag_length,
                           self.auth_length, self.call_id)

    @classmethod
    def decode(cls, data: bytes) -> tuple["Header", int]:
        if len(data) < HEADER_SIZE:
            raise DecodeError(f"RPC header needs {HEADER_SIZE} bytes, got {len(data)}")
        vers, minor, ptype, flags, drep, frag, auth, call_id = HEADER.unpack_from(data)
        return cls(ptype, flags, call_id, vers, minor, bytes(drep), auth), frag


@dataclass
class ContextElement:
    cont_id: int
    abstract: uuid.UUID = KMS_INTERFACE
    abstract_version: tuple[int, int] = KMS_INTERFACE_VERSION
    transfers: tuple[tuple[uuid.UUID, int], ...] = ((NDR32, 2),)

    def encode(self) -> bytes:
        head = struct.pack("<HBB", self.cont_id, len(self.transfers), 0)
        head += self.abstract.bytes_le + struct.pack("<HH", *self.abstract_version)
        return head + b"".join(t.bytes_le + struct.pack("<I", v) for t, v in self.transfers)

    @property
    def transfer(self) -> uuid.UUID:
        return self.transfers[0][0]


@dataclass
class Bind:
    """bind (11) or alter_context (14): the same body."""

    contexts: list[ContextElement]
    header: Header = field(default_factory=lambda: Header(PType.BIND, FIRST_LAST | PFC_CONC_MPX))
    max_xmit: int = DEFAULT_FRAG
    max_recv: int = DEFAULT_FRAG
    assoc_group: int = 0
    trailer: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack("<HHIB3x", self.max_xmit, self.max_recv, self.assoc_group, len(self.contexts))
        body += b"".join(c.encode() for c in self.contexts) + self.trailer
        return self.header.encode(HEADER_SIZE + len(body)) + body


@dataclass
class ContextResult:
    result: int
    reason: int = 0
    transfer: uuid.UUID = uuid.UUID(int=0)
    transfer_version: int = 0

    def encode(self) -> bytes:
        return struct.pack("<HH", self.result, self.reason) + self.transfer.bytes_le + struct.pack("<I", self.transfer_version)


@dataclass
class BindAck:
    """bind_ack (12) or alter_context_resp (15)."""

    results: list[ContextResult]
    header: Header = field(default_factory=lambda: Header(PType.BIND_ACK))
    max_xmit: int = DEFAULT_FRAG
    max_recv: int = DEFAULT_FRAG
    assoc_group: int = 0
    sec_addr: bytes = b""  # including its NUL; empty in alter_context_resp
    pad: bytes | None = None  # None = zeros; decoded PDUs keep what the peer sent
    trailer: bytes = b""

    def encode(self) -> bytes:
        head = struct.pack("<HHIH", self.max_xmit, self.max_recv, self.assoc_group, len(self.sec_addr)) + self.sec_addr
        pad = bytes(-(HEADER_SIZE + len(head)) % 4) if self.pad is None else self.pad
        body = head + pad + struct.pack("<B3x", len(self.results)) + b"".join(r.encode() for r in self.results)
        body += self.trailer
        return self.header.encode(HEADER_SIZE + len(body)) + body


@dataclass
class BindNak:
    reason: int
    versions: list[tuple[int, int]] = field(default_factory=lambda: [(5, 0)])
    header: Header = field(default_factory=lambda: Header(PType.BIND_NAK))

    def encode(self) -> bytes:
        body = struct.pack("<HB", self.reason, len(self.versions)) + b"".join(struct.pack("<BB", *v) for v in self.versions)
        return self.header.encode(HEADER_SIZE + len(body)) + body


@dataclass
class Request:
    stub: bytes
    header: Header = field(default_factory=lambda: Header(PType.REQUEST))
    cont_id: int = 0
    opnum: int = 0
    alloc_hint: int | None = None  # None = len(stub)

    def encode(self) -> bytes:
        hint = len(self.stub) if self.alloc_hint is None else self.alloc_hint
        body = REQUEST_HEAD.pack(hint, self.cont_id, self.opnum) + self.stub
        return self.header.encode(HEADER_SIZE + len(body)) + body


@dataclass
class Response:
    stub: bytes
    header: Header = field(default_factory=lambda: Header(PType.RESPONSE))
    cont_id: int = 0
    cancel_count: int = 0
    reserved: int = 0
    alloc_hint: int | None = None

    def encode(self) -> bytes:
        hint = len(self.stub) if self.alloc_hint is None else self.alloc_hint
        body = RESPONSE_HEAD.pack(hint, self.cont_id, self.cancel_count, self.reserved) + self.stub
        return self.header.encode(HEADER_SIZE + len(body)) + body


@dataclass
class Fault:
    status: int
    header: Header = field(default_factory=lambda: Header(PType.FAULT, FIRST_LAST | PFC_DID_NOT_EXECUTE))
    cont_id: int = 0
    cancel_count: int = 0
    reserved: int = 0
    alloc_hint: int = 32
    reserved2: int = 0
    trailer: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack("<IHBBII", self.alloc_hint, self.cont_id, self.cancel_count, self.reserved,
                           self.status, self.reserved2) + self.trailer
        return self.header.encode(HEADER_SIZE + len(body)) + body


Pdu = Bind | BindAck | BindNak | Request | Response | Fault


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise DecodeError(f"{what} body needs {size} bytes, got {len(body)}")


def _decode_bind(header: Header, body: bytes) -> Bind:
    _need(body, 12, "bind")
    max_xmit, max_recv, group, count = struct.unpack_from("<HHIB", body)
    pos, contexts = 12, []
    for _ in range(count):
        _need(body, pos + 24, f"bind context {len(contexts)}")
        cont_id, n_syn = struct.unpack_from("<HB", body, pos)
        abstract = uuid.UUID(bytes_le=bytes(body[pos + 4 : pos + 20]))
        version = struct.unpack_from("<HH", body, pos + 20)
        pos += 24
        transfers = []
        for _ in range(n_syn):
            _need(body, pos + 20, f"bind context {cont_id} transfer syntax")
            transfers.append((uuid.UUID(bytes_le=bytes(body[pos : pos + 16])), struct.unpack_from("<I", body, pos + 16)[0]))
            pos += 20
        contexts.append(ContextElement(cont_id, abstract, version, tuple(transfers)))
    return Bind(contexts, header, max_xmit, max_recv, group, bytes(body[pos:]))


def _decode_bind_ack(header: Header, body: bytes) -> BindAck:
    _need(body, 10, "bind_ack")
    max_xmit, max_recv, group, addr_len = struct.unpack_from("<HHIH", body)
    _need(body, 10 + addr_len, "bind_ack secondary address")
    sec_addr = bytes(body[10 : 10 + addr_len])
    pad_len = -(HEADER_SIZE + 10 + addr_len) % 4
    pos = 10 + addr_len + pad_len
    _need(body, pos + 4, "bind_ack result list")
    pad = bytes(body[10 + addr_len : pos])
    count = body[pos]
    pos += 4
    results = []
    for _ in range(count):
        _need(body, pos + 24, f"bind_ack result {len(results)}")
        result, reason = struct.unpack_from("<HH", body, pos)
        syntax = uuid.UUID(bytes_le=bytes(body[pos + 4 : pos + 20]))
        results.append(ContextResult(result, reason, syntax, struct.unpack_from("<I", body, pos + 20)[0]))
        pos += 24
    return BindAck(results, header, max_xmit, max_recv, group, sec_addr, pad, bytes(body[pos:]))


def decode_pdu(data: bytes) -> Pdu:
    """One whole PDU (exactly frag_length bytes) into its object."""
    header, frag = Header.decode(data)
    if frag != len(data):
        raise DecodeError(f"frag_length says {frag} bytes but the PDU has {len(data)}")
    body = bytes(data[HEADER_SIZE:])
    ptype = header.ptype
    if ptype in (PType.BIND, PType.ALTER_CONTEXT):
        return _decode_bind(header, body)
    if ptype in (PType.BIND_ACK, PType.ALTER_CONTEXT_RESP):
        return _decode_bind_ack(header, body)
    if ptype == PType.REQUEST:
        _need(body, REQUEST_HEAD.size, "request")
        hint, cont_id, opnum = REQUEST_HEAD.unpack_from(body)
        return Request(body[REQUEST_HEAD.size:], header, cont_id, opnum, hint)
    if ptype == PType.RESPONSE:
        _need(body, RESPONSE_HEAD.size, "response")
        hint, cont_id, cancel, reserved = RESPONSE_HEAD.unpack_from(body)
        return Response(body[RESPONSE_HEAD.size:], header, cont_id, cancel, reserved, hint)
    if ptype == PType.FAULT:
        _need(body, 16, "fault")
        hint, cont_id, cancel, reserved, status, reserved2 = struct.unpack_from("<IHBBII", body)
        return Fault(status, header, cont_id, cancel, reserved, hint, reserved2, body[16:])
    if ptype == PType.BIND_NAK:
        _need(body, 3, "bind_nak")
        reason, count = struct.unpack_from("<HB", body)
        _need(body, 3 + 2 * count, "bind_nak version list")
        versions = [tuple(body[3 + 2 * i : 5 + 2 * i]) for i in range(count)]
        return BindNak(reason, versions, header)
    raise DecodeError(f"PDU type {ptype} is not one KMS uses")


def split_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole PDUs at the front of a byte stream, and the incomplete rest."""
    pdus, pos = [], 0
    while len(buffer) - pos >= HEADER_SIZE:
        frag = peek_frag_length(buffer[pos:])
        if frag < HEADER_SIZE:
            raise DecodeError(f"frag_length {frag} is shorter than the RPC header")
        if len(buffer) - pos < frag:
            break
        pdus.append(bytes(buffer[pos : pos + frag]))
        pos += frag
    return pdus, bytes(buffer[pos:])
