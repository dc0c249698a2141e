"""KMS request and response base structures (PROTOCOL.md 3.2, 3.3) as typed objects.

Pure byte layout: no crypto here (that is `framing.py`). Decoding keeps every raw
byte that carries no meaning (the workstation buffer after its NUL) so that
encode(decode(b)) == b.
"""

from __future__ import annotations

import datetime as dt
import functools
import struct
import uuid
from dataclasses import dataclass, field

from .errors import DecodeError

REQUEST_BASE_SIZE = 236
WORKSTATION_BYTES = 128
WORKSTATION_MAX_CHARS = 63
RESPONSE_FIXED_SIZE = 44
MAX_PID_SIZE = 128

FILETIME_UNIX_EPOCH = 116444736000000000  # 1970-01-01 in 100 ns ticks since 1601


def filetime_from_datetime(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("request times must be timezone-aware (UTC)")
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return FILETIME_UNIX_EPOCH + (delta.days * 86400 + delta.seconds) * 10**7 + delta.microseconds * 10


def datetime_from_filetime(filetime: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        microseconds=(filetime - FILETIME_UNIX_EPOCH) // 10
    )


def filetime_now() -> int:
    return filetime_from_datetime(dt.datetime.now(dt.timezone.utc))


@functools.lru_cache(maxsize=4096)
def _guid_from(raw: bytes) -> uuid.UUID:
    # application, SKU and KMS ids repeat in every request; UUID's own checks are slow
    return uuid.UUID(bytes_le=raw)


def _guid(data: bytes, offset: int) -> uuid.UUID:
    return _guid_from(bytes(data[offset : offset + 16]))


def encode_workstation(name: str, tail: bytes = b"") -> bytes:
    """UTF-16LE, NUL-terminated, in a 128-byte buffer; `tail` fills what follows the NUL."""
    encoded = name.encode("utf-16-le") + b"\x00\x00"
    if len(encoded) > WORKSTATION_BYTES:
        raise ValueError(f"workstation name longer than {WORKSTATION_MAX_CHARS} characters: {name!r}")
    rest = WORKSTATION_BYTES - len(encoded)
    return encoded + (tail[:rest] + b"\x00" * (rest - len(tail[:rest])))


def decode_utf16z(buf: bytes, what: str) -> tuple[str, int]:
    """Text up to the first UTF-16 NUL and the byte index of that NUL."""
    for i in range(0, len(buf) - 1, 2):
        if buf[i] == 0 and buf[i + 1] == 0:
            try:
                return buf[:i].decode("utf-16-le"), i
            except UnicodeDecodeError as exc:
                raise DecodeError(f"{what} is not valid UTF-16LE: {exc}") from None
    raise DecodeError(f"{what} has no terminating UTF-16 NUL")


@dataclass(frozen=True)
class KmsRequest:
    """The 236-byte request base (identical in V4, V5 and V6 once decrypted)."""

    app_id: uuid.UUID
    sku_id: uuid.UUID
    kms_id: uuid.UUID
    cmid: uuid.UUID
    n_policy: int
    request_time: int  # FILETIME
    workstation: str
    major: int = 6
    minor: int = 0
    vm: int = 0
    license_status: int = 2
    binding_expiration: int = 43200
    previous_cmid: uuid.UUID = uuid.UUID(int=0)
    workstation_tail: bytes = field(default=b"", repr=False)  # raw bytes after the NUL

    @property
    def version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def encode(self) -> bytes:
        return b"".join(
            (
                struct.pack("<HHIII", self.minor, self.major, self.vm, self.license_status, self.binding_expiration),
                self.app_id.bytes_le,
                self.sku_id.bytes_le,
                self.kms_id.bytes_le,
                self.cmid.bytes_le,
                struct.pack("<IQ", self.n_policy, self.request_time),
                self.previous_cmid.bytes_le,
                encode_workstation(self.workstation, self.workstation_tail),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> "KmsRequest":
        if len(data) < REQUEST_BASE_SIZE:
            raise DecodeError(f"request base needs {REQUEST_BASE_SIZE} bytes, got {len(data)}")
        minor, major, vm, status, expiration = struct.unpack_from("<HHIII", data, 0)
        n_policy, request_time = struct.unpack_from("<IQ", data, 80)
        raw_name = bytes(data[108:REQUEST_BASE_SIZE])
        name, nul = decode_utf16z(raw_name, "workstation name")
        tail = raw_name[nul + 2 :].rstrip(b"\x00")
        return cls(
            app_id=_guid(data, 16),
            sku_id=_guid(data, 32),
            kms_id=_guid(data, 48),
            cmid=_guid(data, 64),
            n_policy=n_policy,
            request_time=request_time,
            workstation=name,
            major=major,
            minor=minor,
            vm=vm,
            license_status=status,
            binding_expiration=expiration,
            previous_cmid=_guid(data, 92),
            workstation_tail=tail,
        )


@dataclass(frozen=True)
class KmsResponse:
    """The response base: version, ePID, echoes, count and intervals (44 + PIDSize bytes)."""

    epid: str
    cmid: uuid.UUID
    request_time: int
    count: int
    activation_interval: int = 120
    renewal_interval: int = 10080
    major: int = 6
    minor: int = 0
    pid_size: int | None = None  # as sent; None = computed as 2 * (len + 1)

    @property
    def version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def encode(self) -> bytes:
        epid = self.epid.encode("utf-16-le") + b"\x00\x00"
        pid_size = len(epid) if self.pid_size is None else self.pid_size
        return b"".join(
            (
                struct.pack("<HHI", self.minor, self.major, pid_size),
                epid,
                self.cmid.bytes_le,
                struct.pack("<QIII", self.request_time, self.count, self.activation_interval, self.renewal_interval),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> tuple["KmsResponse", int]:
        """The response and the number of bytes it used (the rest belongs to the framing)."""
        if len(data) < RESPONSE_FIXED_SIZE + 2:
            raise DecodeError(f"response base needs at least {RESPONSE_FIXED_SIZE + 2} bytes, got {len(data)}")
        minor, major, pid_size = struct.unpack_from("<HHI", data, 0)
        if pid_size % 2 or pid_size < 2 or pid_size > MAX_PID_SIZE or 8 + pid_size + 36 > len(data):
            raise DecodeError(f"PIDSize {pid_size} is not an even length within 2..{MAX_PID_SIZE} that fits the payload")
        raw = bytes(data[8 : 8 + pid_size])
        epid, nul = decode_utf16z(raw, "ePID")
        if nul != pid_size - 2:
            raise DecodeError(f"ePID has a NUL at byte {nul} before its end (PIDSize {pid_size})")
        end = 8 + pid_size
        request_time, count, activation, renewal = struct.unpack_from("<QIII", data, end + 16)
        response = cls(
            epid=epid,
            cmid=_guid(data, end),
            request_time=request_time,
            count=count,
            activation_interval=activation,
            renewal_interval=renewal,
            major=major,
            minor=minor,
            pid_size=None if pid_size == 2 * (len(epid) + 1) else pid_size,
        )
        return response, end + 36


def peek_version(payload: bytes) -> tuple[int, int]:
    """(major, minor) from the first four bytes of any KMS payload."""
    if len(payload) < 4:
        raise DecodeError(f"KMS payload of {len(payload)} bytes has no version field")
    minor, major = struct.unpack_from("<HH", payload, 0)
    return major, minor
