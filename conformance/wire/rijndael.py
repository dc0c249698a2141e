"""Table-driven Rijndael with a 128-bit block and caller-supplied round keys.

Hand-written because KMS uses two variants no library offers: a 160-bit key
(V4's MAC, PROTOCOL.md 4.2) and AES-128 with three altered round-key bytes
(V6, PROTOCOL.md 6.2). Standard AES goes through `cryptography` instead.

The rounds below are the reference. When the optional C extension `_rijndael`
was built at install time, the same tables and schedules run there instead
(about 30x faster); KMSCONF_PURE_PYTHON=1 forces the Python rounds.
"""

from __future__ import annotations

import os
from array import array

try:
    from . import _rijndael
except ImportError:  # no C compiler at install time: the Python rounds serve alone
    _rijndael = None


def _xtime(b: int) -> int:
    b <<= 1
    return (b ^ 0x11B) if b & 0x100 else b


def _gmul(a: int, b: int) -> int:
    result = 0
    while b:
        if b & 1:
            result ^= a
        a = _xtime(a)
        b >>= 1
    return result


def _build_sbox() -> tuple[list[int], list[int]]:
    sbox = [0] * 256
    inv = [0] * 256
    for x in range(256):
        # multiplicative inverse in GF(2^8), then the affine map
        y = 0 if x == 0 else next(c for c in range(1, 256) if _gmul(x, c) == 1)
        s = y
        for shift in range(1, 5):
            s ^= ((y << shift) | (y >> (8 - shift))) & 0xFF
        s ^= 0x63
        sbox[x] = s
        inv[s] = x
    return sbox, inv


SBOX, INV_SBOX = _build_sbox()


def _ror8(word: int) -> int:
    return ((word >> 8) | (word << 24)) & 0xFFFFFFFF


def _tables(coeffs: tuple[int, int, int, int], box: list[int]) -> tuple[list[int], ...]:
    t0 = []
    for x in range(256):
        s = box[x]
        c = [_gmul(s, k) for k in coeffs]
        t0.append((c[0] << 24) | (c[1] << 16) | (c[2] << 8) | c[3])
    t1 = [_ror8(w) for w in t0]
    t2 = [_ror8(w) for w in t1]
    t3 = [_ror8(w) for w in t2]
    return t0, t1, t2, t3


TE0, TE1, TE2, TE3 = _tables((2, 1, 1, 3), SBOX)
TD0, TD1, TD2, TD3 = _tables((14, 9, 13, 11), INV_SBOX)
_RCON = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36, 0x6C, 0xD8)


def _sub_word(w: int) -> int:
    return (SBOX[w >> 24] << 24) | (SBOX[(w >> 16) & 0xFF] << 16) | (SBOX[(w >> 8) & 0xFF] << 8) | SBOX[w & 0xFF]


def expand_key(key: bytes) -> list[int]:
    """Ordinary Rijndael key schedule for a 128-bit block: 4 * (Nk + 7) words."""
    nk = len(key) // 4
    if len(key) % 4 or not 4 <= nk <= 8:
        raise ValueError(f"Rijndael key must be 16..32 bytes in steps of 4, got {len(key)}")
    words = [int.from_bytes(key[4 * i : 4 * i + 4], "big") for i in range(nk)]
    for i in range(nk, 4 * (nk + 7)):
        temp = words[i - 1]
        if i % nk == 0:
            temp = _sub_word(((temp << 8) | (temp >> 24)) & 0xFFFFFFFF) ^ (_RCON[i // nk - 1] << 24)
        elif nk > 6 and i % nk == 4:
            temp = _sub_word(temp)
        words.append(words[i - nk] ^ temp)
    return words


def _inv_mix_word(w: int) -> int:
    return (
        TD0[SBOX[w >> 24]] ^ TD1[SBOX[(w >> 16) & 0xFF]] ^ TD2[SBOX[(w >> 8) & 0xFF]] ^ TD3[SBOX[w & 0xFF]]
    )


def _packed(words) -> bytes:
    return array("I", words).tobytes()  # native uint32s, as the extension reads them


if _rijndael is not None:
    _rijndael.set_tables(_packed(TE0 + TE1 + TE2 + TE3), _packed(TD0 + TD1 + TD2 + TD3), bytes(SBOX), bytes(INV_SBOX))


def native_available() -> bool:
    return _rijndael is not None and os.environ.get("KMSCONF_PURE_PYTHON", "") in ("", "0")


class Rijndael:
    """One key's encrypt/decrypt of 16-byte blocks and CBC, given its round keys.

    native=None picks the compiled rounds when available; True insists on them,
    False keeps the pure-Python rounds (tests compare the two).
    """

    __slots__ = ("_enc", "_dec", "rounds", "_native", "_enc_packed", "_dec_packed")

    def __init__(self, round_key_words: list[int], native: bool | None = None):
        if len(round_key_words) % 4:
            raise ValueError("round keys must be whole 4-word blocks")
        self.rounds = len(round_key_words) // 4 - 1
        self._enc = tuple(round_key_words)
        # Equivalent inverse cipher: reversed order, InvMixColumns on the inner round keys.
        blocks = [round_key_words[4 * r : 4 * r + 4] for r in range(self.rounds + 1)][::-1]
        dec = list(blocks[0])
        for block in blocks[1:-1]:
            dec.extend(_inv_mix_word(w) for w in block)
        dec.extend(blocks[-1])
        self._dec = tuple(dec)
        if native and _rijndael is None:
            raise RuntimeError("the compiled Rijndael extension is not built (no C compiler at install time?)")
        self._native = native_available() if native is None else native
        self._enc_packed = _packed(self._enc)
        self._dec_packed = _packed(self._dec)

    @property
    def native(self) -> bool:
        return self._native

    @classmethod
    def from_key(cls, key: bytes, native: bool | None = None) -> "Rijndael":
        return cls(expand_key(key), native)

    def encrypt_block(self, block: bytes) -> bytes:
        if self._native:
            return _rijndael.ecb_encrypt(self._enc_packed, block)
        return self._encrypt_block(block)

    def decrypt_block(self, block: bytes) -> bytes:
        if self._native:
            return _rijndael.ecb_decrypt(self._dec_packed, block)
        return self._decrypt_block(block)

    def _encrypt_block(self, block: bytes) -> bytes:
        rk = self._enc
        s0 = int.from_bytes(block[0:4], "big") ^ rk[0]
        s1 = int.from_bytes(block[4:8], "big") ^ rk[1]
        s2 = int.from_bytes(block[8:12], "big") ^ rk[2]
        s3 = int.from_bytes(block[12:16], "big") ^ rk[3]
        te0, te1, te2, te3 = TE0, TE1, TE2, TE3
        k = 4
        for _ in range(self.rounds - 1):
            s0, s1, s2, s3 = (
                te0[s0 >> 24] ^ te1[(s1 >> 16) & 255] ^ te2[(s2 >> 8) & 255] ^ te3[s3 & 255] ^ rk[k],
                te0[s1 >> 24] ^ te1[(s2 >> 16) & 255] ^ te2[(s3 >> 8) & 255] ^ te3[s0 & 255] ^ rk[k + 1],
                te0[s2 >> 24] ^ te1[(s3 >> 16) & 255] ^ te2[(s0 >> 8) & 255] ^ te3[s1 & 255] ^ rk[k + 2],
                te0[s3 >> 24] ^ te1[(s0 >> 16) & 255] ^ te2[(s1 >> 8) & 255] ^ te3[s2 & 255] ^ rk[k + 3],
            )
            k += 4
        sb = SBOX
        out = (
            ((sb[s0 >> 24] << 24) | (sb[(s1 >> 16) & 255] << 16) | (sb[(s2 >> 8) & 255] << 8) | sb[s3 & 255]) ^ rk[k],
            ((sb[s1 >> 24] << 24) | (sb[(s2 >> 16) & 255] << 16) | (sb[(s3 >> 8) & 255] << 8) | sb[s0 & 255]) ^ rk[k + 1],
            ((sb[s2 >> 24] << 24) | (sb[(s3 >> 16) & 255] << 16) | (sb[(s0 >> 8) & 255] << 8) | sb[s1 & 255]) ^ rk[k + 2],
            ((sb[s3 >> 24] << 24) | (sb[(s0 >> 16) & 255] << 16) | (sb[(s1 >> 8) & 255] << 8) | sb[s2 & 255]) ^ rk[k + 3],
        )
        return b"".join(w.to_bytes(4, "big") for w in out)

    def _decrypt_block(self, block: bytes) -> bytes:
        rk = self._dec
        s0 = int.from_bytes(block[0:4], "big") ^ rk[0]
        s1 = int.from_bytes(block[4:8], "big") ^ rk[1]
        s2 = int.from_bytes(block[8:12], "big") ^ rk[2]
        s3 = int.from_bytes(block[12:16], "big") ^ rk[3]
        td0, td1, td2, td3 = TD0, TD1, TD2, TD3
        k = 4
        for _ in range(self.rounds - 1):
            s0, s1, s2, s3 = (
                td0[s0 >> 24] ^ td1[(s3 >> 16) & 255] ^ td2[(s2 >> 8) & 255] ^ td3[s1 & 255] ^ rk[k],
                td0[s1 >> 24] ^ td1[(s0 >> 16) & 255] ^ td2[(s3 >> 8) & 255] ^ td3[s2 & 255] ^ rk[k + 1],
                td0[s2 >> 24] ^ td1[(s1 >> 16) & 255] ^ td2[(s0 >> 8) & 255] ^ td3[s3 & 255] ^ rk[k + 2],
                td0[s3 >> 24] ^ td1[(s2 >> 16) & 255] ^ td2[(s1 >> 8) & 255] ^ td3[s0 & 255] ^ rk[k + 3],
            )
            k += 4
        ib = INV_SBOX
        out = (
            ((ib[s0 >> 24] << 24) | (ib[(s3 >> 16) & 255] << 16) | (ib[(s2 >> 8) & 255] << 8) | ib[s1 & 255]) ^ rk[k],
            ((ib[s1 >> 24] << 24) | (ib[(s0 >> 16) & 255] << 16) | (ib[(s3 >> 8) & 255] << 8) | ib[s2 & 255]) ^ rk[k + 1],
            ((ib[s2 >> 24] << 24) | (ib[(s1 >> 16) & 255] << 16) | (ib[(s0 >> 8) & 255] << 8) | ib[s3 & 255]) ^ rk[k + 2],
            ((ib[s3 >> 24] << 24) | (ib[(s2 >> 16) & 255] << 16) | (ib[(s1 >> 8) & 255] << 8) | ib[s0 & 255]) ^ rk[k + 3],
        )
        return b"".join(w.to_bytes(4, "big") for w in out)

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        if len(data) % 16:
            raise ValueError("CBC input must be whole blocks")
        if self._native:
            return _rijndael.cbc_encrypt(self._enc_packed, iv, data)
        out = []
        prev = int.from_bytes(iv, "big")
        for i in range(0, len(data), 16):
            block = self._encrypt_block((int.from_bytes(data[i : i + 16], "big") ^ prev).to_bytes(16, "big"))
            out.append(block)
            prev = int.from_bytes(block, "big")
        return b"".join(out)

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        if len(data) % 16:
            raise ValueError("CBC input must be whole blocks")
        if self._native:
            return _rijndael.cbc_decrypt(self._dec_packed, iv, data)
        out = []
        prev = int.from_bytes(iv, "big")
        for i in range(0, len(data), 16):
            block = data[i : i + 16]
            out.append((int.from_bytes(self._decrypt_block(block), "big") ^ prev).to_bytes(16, "big"))
            prev = int.from_bytes(block, "big")
        return b"".join(out)
