"""NDR32 / NDR64 marshalling of RequestActivation's arguments (PROTOCOL.md 2.7)."""

from __future__ import annotations

import struct

from .errors import DecodeError

UNIQUE_REFERENT = 0x00020000


def encode_request_stub(payload: bytes, ndr64: bool = False) -> bytes:
    if ndr64:
        return struct.pack("<IIQ", len(payload), 0, len(payload)) + payload
    return struct.pack("<II", len(payload), len(payload)) + payload


def decode_request_stub(stub: bytes, ndr64: bool = False) -> bytes:
    """The KMS request payload; size and conformance must agree and fit the stub."""
    head = 16 if ndr64 else 8
    if len(stub) < head:
        raise DecodeError(f"NDR{64 if ndr64 else 32} request stub needs {head} bytes, got {len(stub)}")
    if ndr64:
        size, _, count = struct.unpack_from("<IIQ", stub)
    else:
        size, count = struct.unpack_from("<II", stub)
    if size != count:
        raise DecodeError(f"requestSize {size} differs from the array's conformance {count}")
    if head + size > len(stub):
        raise DecodeError(f"requestSize {size} runs past the stub ({len(stub) - head} bytes of array)")
    return bytes(stub[head : head + size])


def encode_response_stub(payload: bytes, ndr64: bool = False, hresult: int = 0) -> bytes:
    pad = bytes(-len(payload) % 4)
    if ndr64:
        head = struct.pack("<IIQQ", len(payload), 0, UNIQUE_REFERENT, len(payload))
    else:
        head = struct.pack("<III", len(payload), UNIQUE_REFERENT, len(payload))
    return head + payload + pad + struct.pack("<I", hresult)


def encode_error_stub(hresult: int, ndr64: bool = False) -> bytes:
    """responseSize 0, NULL pointer, the HRESULT."""
    return bytes(16 if ndr64 else 8) + struct.pack("<I", hresult)


def decode_response_stub(stub: bytes, ndr64: bool = False) -> tuple[bytes | None, int]:
    """(payload or None for a NULL pointer, HRESULT)."""
    if ndr64:
        if len(stub) < 20:
            raise DecodeError(f"NDR64 response stub needs at least 20 bytes, got {len(stub)}")
        size, _, referent = struct.unpack_from("<IIQ", stub)
        pos = 16
    else:
        if len(stub) < 12:
            raise DecodeError(f"NDR32 response stub needs at least 12 bytes, got {len(stub)}")
        size, referent = struct.unpack_from("<II", stub)
        pos = 8
    if referent == 0:
        return None, struct.unpack_from("<I", stub, pos)[0]
    width = 8 if ndr64 else 4
    if len(stub) < pos + width:
        raise DecodeError("response stub ends before the array's conformance")
    count = struct.unpack_from("<Q" if ndr64 else "<I", stub, pos)[0]
    pos += width
    if count != size:
        raise DecodeError(f"responseSize {size} differs from the array's conformance {count}")
    end = pos + size + (-size % 4)
    if end + 4 > len(stub):
        raise DecodeError(f"responseSize {size} runs past the stub of {len(stub)} bytes")
    return bytes(stub[pos : pos + size]), struct.unpack_from("<I", stub, end)[0]
