"""An instrumented host whose answers break one rule of PROTOCOL.md 3.3/4-6 at a time, or carry a chosen count.

For the clauses on what a client makes of an answer (C4, C5): every other field of a broken answer is
right and every other check of it holds (a V6 answer with a wrong XoredIVs carries an HMAC over that
wrong value), so a client that rejects it rejects it for the one broken rule.
"""

from __future__ import annotations

import struct
import uuid

from conformance.reference.host.config import HostConfig
from conformance.reference.host.service import Admitted, KmsService, Decision
from conformance.wire import crypto, framing, hresult, layout
from conformance.wire.messages import KmsResponse

# break -> (what it breaks, the KMS versions it applies to)
BREAKS = {
    "cmid": ("the CMID echo is another GUID", (4, 5, 6)),
    "request-time": ("the request-time echo is one second off", (4, 5, 6)),
    "integrity": ("the V4 MAC, V5 hash or V6 HMAC has one bit flipped", (4, 5, 6)),
    "xored-ivs": ("XoredIVs has one bit flipped (its HMAC recomputed over it)", (6,)),
    "pid-size": ("PIDSize counts the ePID without its terminating NUL", (4, 5, 6)),
}
COUNTS = {"below": -1, "at": 0}  # the count answered, relative to the request's N


class ShortPidResponse(KmsResponse):
    """A response base whose PIDSize and ePID bytes leave out the terminating NUL (2 x length, not 2 x (length + 1))."""

    def encode(self) -> bytes:
        full = super().encode()
        epid = self.epid.encode("utf-16-le")
        head = struct.pack("<HHI", self.minor, self.major, len(epid))
        return head + epid + full[8 + len(epid) + 2:]


class BrokenAnswerService(KmsService):
    """Answers every request with `mode`: a key of BREAKS, or of COUNTS (a valid answer with that count)."""

    def __init__(self, mode: str, config: HostConfig | None = None):
        if mode not in BREAKS and mode not in COUNTS:
            raise ValueError(f"unknown answer mode {mode!r}: {', '.join([*BREAKS, *COUNTS])}")
        super().__init__(config or HostConfig(port=0))
        self.mode = mode

    def answer(self, admitted: Admitted, count: int) -> Decision:
        opened = admitted.opened
        request = opened.request
        count = request.n_policy + COUNTS.get(self.mode, 0)
        kind = ShortPidResponse if self.mode == "pid-size" else KmsResponse
        response = kind(self.epids[admitted.key.slug],
                        uuid.uuid4() if self.mode == "cmid" else request.cmid,
                        request.request_time + (10**7 if self.mode == "request-time" else 0), count,
                        self.config.activation_interval, self.config.renewal_interval, request.major, request.minor)
        sealed = framing.seal_response(response, opened, hwid=self.hwid)
        if self.mode == "integrity":
            sealed = _flip(sealed, opened.major, {4: "mac", 5: "hash", 6: "hmac"}[opened.major])
        elif self.mode == "xored-ivs" and opened.major == 6:
            sealed = _flip(sealed, 6, "xored_ivs")
        return Decision(sealed, hresult.S_OK, count, opened)


def _flip(sealed: bytes, major: int, field: str) -> bytes:
    """One bit of `field` flipped: the V4 MAC in the clear, a V5/V6 trailer field inside the encryption; a V6
    field other than the HMAC gets an HMAC over its new value."""
    if major == 4:
        return sealed[:-1] + bytes([sealed[-1] ^ 1])
    cipher = crypto.V5_AES if major == 5 else crypto.V6_AES
    iv = sealed[layout.IV]
    plain = bytearray(crypto.pkcs7_unpad(cipher.cbc_decrypt(iv, sealed[layout.IV.stop:])) or b"")
    trailer = len(plain) - layout.RESPONSE_TRAILER.size(major)
    plain[trailer + layout.RESPONSE_TRAILER.slice(field, major).stop - 1] ^= 1
    if major == 6 and field != "hmac":
        response, _ = KmsResponse.decode(bytes(plain))
        hmac_at = trailer + layout.RESPONSE_TRAILER.slice("hmac", 6).start
        key = crypto.v6_hmac_key(response.request_time)
        plain[hmac_at:] = crypto.hmac_sha256(key, cipher.decrypt_block(iv) + bytes(plain[:hmac_at]))[16:]
    return sealed[:layout.IV.stop] + cipher.cbc_encrypt(iv, crypto.pkcs7_pad(bytes(plain)))
