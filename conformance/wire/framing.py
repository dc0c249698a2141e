"""Per-version KMS envelopes: V4 MAC, V5 AES-CBC + hash, V6 modified AES + HMAC.

`seal_*` build payloads, `open_*` take them apart and report every integrity
check by name, so a verdict can say exactly which one failed (PROTOCOL.md 4-6).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from . import crypto
from .layout import ENVELOPE, HWID_SIZE, IV, RESPONSE_TRAILER
from .errors import DecodeError
from .messages import REQUEST_BASE_SIZE, KmsRequest, KmsResponse, peek_version

SUPPORTED_MAJORS = (4, 5, 6)
V4_REQUEST_SIZE = REQUEST_BASE_SIZE + 16
ENCRYPTED_REQUEST_SIZE = ENVELOPE.size(6) + REQUEST_BASE_SIZE + 4  # version, IV, base + 4 pad bytes
REQUEST_PADDING = b"\x04" * 4


class UnsupportedVersion(DecodeError):
    def __init__(self, major: int, minor: int):
        super().__init__(f"KMS protocol version {major}.{minor} is not supported (4.0, 5.0 and 6.0 are)")
        self.major, self.minor = major, minor


def _cipher(major: int) -> crypto.BlockCipher:
    return crypto.V5_AES if major == 5 else crypto.V6_AES


@dataclass(frozen=True)
class OpenedRequest:
    request: KmsRequest
    major: int
    minor: int
    iv: bytes = b""  # V5/V6 request IV
    decrypted_iv: bytes = b""  # D_K(IV): V5/V6 hash input, V6 XoredIVs
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return all(self.checks.values())


@dataclass(frozen=True)
class OpenedResponse:
    response: KmsResponse
    major: int
    minor: int
    iv: bytes = b""
    random_xored_ivs: bytes = b""
    hash: bytes = b""
    hwid: bytes = b""
    xored_ivs: bytes = b""
    hmac: bytes = b""
    mac: bytes = b""
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def failed_checks(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]


def seal_request(request: KmsRequest, iv: bytes | None = None) -> bytes:
    base = request.encode()
    if request.major == 4:
        return base + crypto.v4_mac(base)
    iv = os.urandom(16) if iv is None else iv
    header = struct.pack("<HH", request.minor, request.major)
    return header + iv + _cipher(request.major).cbc_encrypt(iv, base + REQUEST_PADDING)


def open_request(payload: bytes, *, allow_minor: bool = False) -> OpenedRequest:
    """Decode a client's request payload; trailing bytes beyond the standard size are ignored."""
    major, minor = peek_version(payload)
    if major not in SUPPORTED_MAJORS or (minor != 0 and not allow_minor):
        raise UnsupportedVersion(major, minor)
    if major == 4:
        if len(payload) < V4_REQUEST_SIZE:
            raise DecodeError(f"V4 request needs {V4_REQUEST_SIZE} bytes, got {len(payload)}")
        base = payload[:REQUEST_BASE_SIZE]
        mac = payload[REQUEST_BASE_SIZE:V4_REQUEST_SIZE]
        return OpenedRequest(KmsRequest.decode(base), major, minor, checks={"mac": crypto.v4_mac(base) == mac})
    if len(payload) < ENCRYPTED_REQUEST_SIZE:
        raise DecodeError(f"V{major} request needs {ENCRYPTED_REQUEST_SIZE} bytes, got {len(payload)}")
    cipher = _cipher(major)
    iv = bytes(payload[IV])
    plain = cipher.cbc_decrypt(iv, bytes(payload[IV.stop:ENCRYPTED_REQUEST_SIZE]))
    request = KmsRequest.decode(plain)
    checks = {
        "padding": plain[REQUEST_BASE_SIZE:] == REQUEST_PADDING,
        "inner_version": request.version == (major, minor),
    }
    return OpenedRequest(request, major, minor, iv, cipher.decrypt_block(iv), checks)


def seal_response(
    response: KmsResponse,
    opened: OpenedRequest,
    *,
    hwid: bytes = b"",
    random: bytes | None = None,
    response_block: bytes | None = None,
) -> bytes:
    """Answer `opened` with `response`. `random` and `response_block` (V6's R) default to fresh randomness."""
    base = response.encode()
    if opened.major == 4:
        return base + crypto.v4_mac(base)
    random = os.urandom(16) if random is None else random
    cipher = _cipher(opened.major)
    plain = base + crypto.xor(random, opened.decrypted_iv) + crypto.sha256(random)
    header = struct.pack("<HH", response.minor, response.major)
    if opened.major == 5:
        return header + opened.iv + cipher.cbc_encrypt(opened.iv, crypto.pkcs7_pad(plain))
    if len(hwid) != HWID_SIZE:
        raise ValueError(f"V6 responses need an {HWID_SIZE}-byte HwId, got {len(hwid)}")
    block = os.urandom(16) if response_block is None else response_block
    plain += hwid + opened.decrypted_iv
    plain += crypto.hmac_sha256(crypto.v6_hmac_key(response.request_time), block + plain)[16:]
    response_iv = cipher.encrypt_block(block)
    return header + response_iv + cipher.cbc_encrypt(response_iv, crypto.pkcs7_pad(plain))


def open_response(payload: bytes, request_iv: bytes = b"") -> OpenedResponse:
    """Decode a host's response payload; V5/V6 checks need the IV of the request it answers."""
    major, minor = peek_version(payload)
    if major not in SUPPORTED_MAJORS:
        raise UnsupportedVersion(major, minor)
    if major == 4:
        response, used = KmsResponse.decode(payload)
        mac = bytes(payload[used : used + 16])
        if len(mac) != 16:
            raise DecodeError(f"V4 response lacks its 16-byte MAC ({len(mac)} bytes after the base)")
        checks = {"mac": crypto.v4_mac(bytes(payload[:used])) == mac}
        return OpenedResponse(response, major, minor, mac=mac, checks=checks)
    if len(payload) < IV.stop + 16 or (len(payload) - IV.stop) % 16:
        raise DecodeError(f"V{major} response of {len(payload)} bytes is not version + IV + whole AES blocks")
    cipher = _cipher(major)
    iv = bytes(payload[IV])
    decrypted = cipher.cbc_decrypt(iv, bytes(payload[IV.stop:]))
    plain = crypto.pkcs7_unpad(decrypted)
    checks = {"padding": plain is not None}
    plain = decrypted if plain is None else plain
    response, used = KmsResponse.decode(plain)
    tail = plain[used:]
    extra_size = RESPONSE_TRAILER.size(major)
    if len(tail) < extra_size:
        raise DecodeError(f"V{major} response body ends {extra_size - len(tail)} bytes early after the ePID fields")
    trailer = RESPONSE_TRAILER.split(tail, major)
    random_xored, digest = trailer["random_xored_ivs"], trailer["hash"]
    checks["inner_version"] = response.version == (major, minor)
    fields: dict[str, bytes] = {}
    if major == 5:
        checks["iv_echo"] = iv == request_iv if request_iv else False
    else:
        fields = {name: trailer[name] for name in ("hwid", "xored_ivs", "hmac")}
        if request_iv:
            checks["xored_ivs"] = trailer["xored_ivs"] == cipher.decrypt_block(request_iv)
        block = cipher.decrypt_block(iv)
        key = crypto.v6_hmac_key(response.request_time)
        signed = used + RESPONSE_TRAILER.slice("hmac", 6).start  # the HMAC covers everything before it
        checks["hmac"] = crypto.hmac_sha256(key, block + plain[:signed])[16:] == trailer["hmac"]
    if request_iv:
        random = crypto.xor(random_xored, cipher.decrypt_block(request_iv))
        checks["hash"] = crypto.sha256(random) == digest
    else:
        checks["hash"] = False  # cannot be checked without the request's IV
    return OpenedResponse(
        response, major, minor, iv=iv, random_xored_ivs=random_xored, hash=digest, checks=checks, **fields
    )
