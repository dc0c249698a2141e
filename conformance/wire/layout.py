"""One declarative description of the KMS payload parts that have fixed sizes (PROTOCOL.md 4-6).

The codec (framing), the faulty host, the fuzzer's mutators and the scapy layers all take
offsets from here, so the V5/V6 layout is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    versions: tuple[int, ...] = (5, 6)  # the protocol versions whose payload carries this part


@dataclass(frozen=True)
class Layout:
    parts: tuple[Part, ...]

    def of(self, major: int) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if major in p.versions)

    def size(self, major: int) -> int:
        return sum(p.size for p in self.of(major))

    def slice(self, name: str, major: int) -> slice:
        """Where part `name` lies in a `major` payload's section this layout describes."""
        offset = 0
        for part in self.of(major):
            if part.name == name:
                return slice(offset, offset + part.size)
            offset += part.size
        raise KeyError(f"V{major} has no {name!r} in this layout")

    def split(self, data: bytes, major: int) -> dict[str, bytes]:
        return {p.name: bytes(data[self.slice(p.name, major)]) for p in self.of(major)}


# The clear start of a V5/V6 payload (request or response); the AES-CBC ciphertext follows.
ENVELOPE = Layout((Part("minor", 2), Part("major", 2), Part("iv", 16)))
# What follows the response base (after the ePID fields) in the decrypted V5/V6 response, before padding.
RESPONSE_TRAILER = Layout((
    Part("random_xored_ivs", 16),
    Part("hash", 32),
    Part("hwid", 8, (6,)),
    Part("xored_ivs", 16, (6,)),
    Part("hmac", 16, (6,)),
))
HWID_SIZE = 8
IV = ENVELOPE.slice("iv", 6)  # payload[IV] is the IV of a V5/V6 request or response
