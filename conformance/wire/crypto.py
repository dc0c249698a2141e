"""KMS cryptography: the V4 CBC-MAC, V5 AES-128-CBC, V6 modified AES and HMAC key.

Standard AES, SHA-256 and HMAC come from `cryptography`; only the two Rijndael
variants (PROTOCOL.md 4.2 and 6.2) are hand-written, in `rijndael.py`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .rijndael import Rijndael, expand_key

V4_KEY = bytes.fromhex("053D8307F9E5F088EB5EA6686CF037C7E4EFD2D6")
V5_KEY = bytes.fromhex("CD7E796F2AB25DCB55FFC8EF8364C470")
V6_KEY = bytes.fromhex("A94A4195E201432D9BCB460405D84A21")

# V6 round-key tweaks: (expanded-key byte offset, XOR value), applied after expansion.
V6_ROUND_KEY_TWEAKS = ((64, 0x73), (96, 0x09), (128, 0xE4))

# V6 HMAC key derivation constants (PROTOCOL.md 6.3).
HMAC_TIME_SLOT = 0x00000022816889BD
HMAC_SEED_MUL = 0x000000208CBAB5ED
HMAC_SEED_ADD = 0x3156CD5AC628477A


def _v6_round_keys() -> list[int]:
    words = expand_key(V6_KEY)
    for offset, value in V6_ROUND_KEY_TWEAKS:
        words[offset // 4] ^= value << (8 * (3 - offset % 4))
    return words


V4_CIPHER = Rijndael.from_key(V4_KEY)
V6_CIPHER = Rijndael(_v6_round_keys())


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()  # the standard library's one call: a quarter of an object API's cost


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def v4_mac(message: bytes) -> bytes:
    """CBC-MAC with zero IV over ISO 9797-1 method-2 padding, Rijndael-160 (PROTOCOL.md 4.2)."""
    padded = message + b"\x80" + b"\x00" * ((15 - len(message)) % 16)
    return V4_CIPHER.cbc_encrypt(b"\x00" * 16, padded)[-16:]


def pkcs7_pad(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes) -> bytes | None:
    """The data without its padding, or None when the padding is malformed."""
    if not data or len(data) % 16:
        return None
    n = data[-1]
    if not 1 <= n <= 16 or data[-n:] != bytes([n]) * n:
        return None
    return data[:-n]


class BlockCipher(Protocol):
    """The one interface V5 and V6 framing need: single blocks and CBC."""

    def encrypt_block(self, block: bytes) -> bytes: ...
    def decrypt_block(self, block: bytes) -> bytes: ...
    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes: ...
    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes: ...


class StandardAes:
    """AES-128 with the standard schedule, via `cryptography` (V5)."""

    def __init__(self, key: bytes):
        self._aes = algorithms.AES(key)

    def _run(self, mode, data: bytes, encrypt: bool) -> bytes:
        cipher = Cipher(self._aes, mode)
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(data) + ctx.finalize()

    def encrypt_block(self, block: bytes) -> bytes:
        return self._run(modes.ECB(), block, True)

    def decrypt_block(self, block: bytes) -> bytes:
        return self._run(modes.ECB(), block, False)

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._run(modes.CBC(iv), data, True)

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._run(modes.CBC(iv), data, False)


V5_AES: BlockCipher = StandardAes(V5_KEY)
V6_AES: BlockCipher = V6_CIPHER


def v6_hmac_key(request_time: int, slot_offset: int = 0) -> bytes:
    """HMAC key from the echoed request time; slot_offset mirrors vlmcs's +-C1 tolerance on the seed."""
    return _slot_key(request_time // HMAC_TIME_SLOT, slot_offset)


@functools.lru_cache(maxsize=64)
def _slot_key(slot: int, slot_offset: int) -> bytes:
    """The key of one time slot: it changes every few hours, not per request."""
    seed = (slot * HMAC_SEED_MUL + HMAC_SEED_ADD + slot_offset * HMAC_TIME_SLOT) % 2**64
    return sha256(seed.to_bytes(8, "little"))[16:]
