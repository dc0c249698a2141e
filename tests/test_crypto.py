"""KMS crypto primitives against PROTOCOL.md 4.2, 5.2, 6.2 and 6.3, and the hand-written Rijndael
against `cryptography`'s AES (an independent implementation)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.wire import crypto
from conformance.wire.rijndael import Rijndael, expand_key

ZERO = bytes(16)
PROPS = settings(max_examples=80, deadline=None)
blocks = st.binary(min_size=16, max_size=16)
keys16 = st.binary(min_size=16, max_size=16)
keys20 = st.binary(min_size=20, max_size=20)
whole_blocks = st.binary(max_size=128).map(lambda b: b[: len(b) // 16 * 16])


def round_key(words: list[int], index: int) -> str:
    return b"".join(w.to_bytes(4, "big") for w in words[4 * index: 4 * index + 4]).hex()


def aes_ecb(key: bytes, block: bytes, encrypt: bool = True) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(block) + ctx.finalize()


# --- PROTOCOL.md 4.2: V4 (Rijndael-160 CBC-MAC) ---

def test_v4_key_is_the_documented_one():
    assert crypto.V4_KEY == bytes.fromhex("053D8307F9E5F088EB5EA6686CF037C7E4EFD2D6")


def test_rijndael160_schedule_shape():
    words = expand_key(crypto.V4_KEY)
    assert len(words) == 4 * 12  # Nk = 5 -> Nr = 11 -> 12 round keys = 192 bytes
    assert crypto.V4_CIPHER.rounds == 11
    assert round_key(words, 0) == crypto.V4_KEY[:16].hex()


def test_rijndael160_of_zero_block():
    assert crypto.V4_CIPHER.encrypt_block(ZERO).hex() == "933030f10e2e7782b80915d5778a4957"
    assert Rijndael.from_key(crypto.V4_KEY).encrypt_block(ZERO).hex() == "933030f10e2e7782b80915d5778a4957"
    assert crypto.V4_CIPHER.decrypt_block(bytes.fromhex("933030f10e2e7782b80915d5778a4957")) == ZERO


def test_v4_mac_of_empty_message():
    assert crypto.v4_mac(b"").hex() == "d144963029e2bd12f9970c9f52b27f09"
    # the empty message pads to one block 80 00..00 (ISO 9797-1 method 2)
    assert crypto.V4_CIPHER.encrypt_block(b"\x80" + bytes(15)).hex() == "d144963029e2bd12f9970c9f52b27f09"


def test_v4_mac_of_sixteen_zero_bytes():
    assert crypto.v4_mac(ZERO).hex() == "2a090d7c1155251ab86445447d060335"
    # a whole block gets a full padding block: two CBC steps from a zero IV
    first = crypto.V4_CIPHER.encrypt_block(ZERO)
    second = crypto.V4_CIPHER.encrypt_block(crypto.xor(first, b"\x80" + bytes(15)))
    assert second.hex() == "2a090d7c1155251ab86445447d060335"


@PROPS
@given(st.binary(max_size=80))
def test_v4_mac_is_cbc_mac_with_method2_padding(message):
    padded = message + b"\x80" + bytes(-(len(message) + 1) % 16)
    x = ZERO
    for i in range(0, len(padded), 16):
        x = crypto.V4_CIPHER.encrypt_block(crypto.xor(x, padded[i:i + 16]))
    assert crypto.v4_mac(message) == x and len(x) == 16


# --- PROTOCOL.md 5.2: V5 (standard AES-128) ---

def test_v5_key_and_vector():
    assert crypto.V5_KEY == bytes.fromhex("CD7E796F2AB25DCB55FFC8EF8364C470")
    assert crypto.V5_AES.encrypt_block(ZERO).hex() == "ec7c7e75b1923978eac4b2d2260235d5"
    assert aes_ecb(crypto.V5_KEY, ZERO).hex() == "ec7c7e75b1923978eac4b2d2260235d5"
    assert Rijndael.from_key(crypto.V5_KEY).encrypt_block(ZERO).hex() == "ec7c7e75b1923978eac4b2d2260235d5"
    assert crypto.V5_AES.decrypt_block(bytes.fromhex("ec7c7e75b1923978eac4b2d2260235d5")) == ZERO


# --- PROTOCOL.md 6.2: V6 (AES-128 with three altered round-key bytes) ---

@pytest.mark.parametrize("index, standard, modified_prefix", [
    (4, "7630e12e111e2b4d3f6a5901edca6094", "0530e12e"),
    (6, "6adec9456920217355b4904484ea41e7", "63dec945"),
    (8, "0bc82943cfb5552a5e7cb9074b5f14cd", "efc82943"),
])
def test_v6_round_key_tweaks(index, standard, modified_prefix):
    assert crypto.V6_KEY == bytes.fromhex("A94A4195E201432D9BCB460405D84A21")
    plain = expand_key(crypto.V6_KEY)
    tweaked = crypto._v6_round_keys()
    assert round_key(plain, index) == standard
    assert round_key(tweaked, index) == modified_prefix + standard[8:]


def test_v6_tweaks_touch_only_three_bytes_and_do_not_feed_back():
    plain = b"".join(w.to_bytes(4, "big") for w in expand_key(crypto.V6_KEY))
    tweaked = b"".join(w.to_bytes(4, "big") for w in crypto._v6_round_keys())
    diff = {i: a ^ b for i, (a, b) in enumerate(zip(plain, tweaked)) if a != b}
    assert diff == {64: 0x73, 96: 0x09, 128: 0xE4}


def test_aes6_of_zeros_and_plain_aes_contrast():
    assert crypto.V6_AES.encrypt_block(ZERO).hex() == "8ca59de0c483c04aa7026a22d6dd208e"
    assert crypto.V6_AES.decrypt_block(bytes.fromhex("8ca59de0c483c04aa7026a22d6dd208e")) == ZERO
    assert Rijndael.from_key(crypto.V6_KEY).encrypt_block(ZERO).hex() == "b4c3c015f6fb320c9b64aecd52fa58c8"
    assert aes_ecb(crypto.V6_KEY, ZERO).hex() == "b4c3c015f6fb320c9b64aecd52fa58c8"


@PROPS
@given(blocks)
def test_aes6_decrypt_inverts_encrypt(block):
    assert crypto.V6_AES.decrypt_block(crypto.V6_AES.encrypt_block(block)) == block
    assert crypto.V6_AES.encrypt_block(block) != aes_ecb(crypto.V6_KEY, block)


# --- PROTOCOL.md 6.3: V6 HMAC key ---

def test_v6_hmac_key_vector():
    t = 134400606700000000
    assert t == 0x01DD7CA3C3F35300
    seed = (t // crypto.HMAC_TIME_SLOT * crypto.HMAC_SEED_MUL + crypto.HMAC_SEED_ADD) % 2**64
    assert seed == 0x33193983C1009F88
    assert seed.to_bytes(8, "little").hex() == "889f00c183391933"
    assert crypto.sha256(seed.to_bytes(8, "little")).hex() == \
        "b517083cda26f7d17d028dbb6a53203e7ebdfb205d0e9dad9f3181fce4639700"
    assert crypto.v6_hmac_key(t).hex() == "7ebdfb205d0e9dad9f3181fce4639700"


def test_v6_hmac_key_is_constant_within_a_slot():
    t = 134400606700000000
    start = t // crypto.HMAC_TIME_SLOT * crypto.HMAC_TIME_SLOT
    assert crypto.v6_hmac_key(start) == crypto.v6_hmac_key(start + crypto.HMAC_TIME_SLOT - 1) == crypto.v6_hmac_key(t)
    assert crypto.v6_hmac_key(start - 1) != crypto.v6_hmac_key(t)


def test_hmac_helper_is_plain_hmac_sha256():
    key = bytes.fromhex("7ebdfb205d0e9dad9f3181fce4639700")
    assert crypto.hmac_sha256(key, b"abc") == hmac.new(key, b"abc", hashlib.sha256).digest()


def test_sha256_and_xor_helpers():
    assert crypto.sha256(b"").hex() == hashlib.sha256(b"").hexdigest()
    assert crypto.xor(bytes.fromhex("9b7543c0983aec31b837679c3556ecb9"),
                      bytes.fromhex("8a89a851417510fda797a2c7cbd8e144")).hex() == "11fceb91d94ffccc1fa0c55bfe8e0dfd"


# --- properties ---

def check_inverse(key: bytes, block: bytes, rounds: int) -> None:
    cipher = Rijndael.from_key(key)
    assert cipher.rounds == rounds
    assert cipher.decrypt_block(cipher.encrypt_block(block)) == block
    assert cipher.encrypt_block(cipher.decrypt_block(block)) == block


@PROPS
@given(keys16, blocks)
def test_rijndael_16_byte_key_inverse(key, block):
    check_inverse(key, block, rounds=10)  # AES-128 schedule (V5, and V6 before its tweak)


@PROPS
@given(keys20, blocks)
def test_rijndael_20_byte_key_inverse(key, block):
    check_inverse(key, block, rounds=11)  # the V4 MAC's 160-bit key


@PROPS
@given(keys16, blocks)
def test_handwritten_rijndael_128_equals_cryptography_aes(key, block):
    ours = Rijndael.from_key(key)
    assert ours.encrypt_block(block) == aes_ecb(key, block)
    assert ours.decrypt_block(block) == aes_ecb(key, block, encrypt=False)


@PROPS
@given(keys16, blocks, whole_blocks)
def test_handwritten_cbc_equals_cryptography_cbc(key, iv, data):
    ours = Rijndael.from_key(key)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    theirs = enc.update(data) + enc.finalize()
    assert ours.cbc_encrypt(iv, data) == theirs
    assert ours.cbc_decrypt(iv, theirs) == data


@PROPS
@given(st.one_of(keys16, keys20), blocks, whole_blocks)
def test_cbc_round_trip(key, iv, data):
    cipher = Rijndael.from_key(key)
    encrypted = cipher.cbc_encrypt(iv, data)
    assert len(encrypted) == len(data)
    assert cipher.cbc_decrypt(iv, encrypted) == data


@PROPS
@given(blocks, whole_blocks)
def test_v5_and_v6_cbc_round_trip(iv, data):
    for cipher in (crypto.V5_AES, crypto.V6_AES):
        assert cipher.cbc_decrypt(iv, cipher.cbc_encrypt(iv, data)) == data


def test_cbc_refuses_partial_blocks():
    with pytest.raises(ValueError):
        crypto.V4_CIPHER.cbc_encrypt(ZERO, b"x" * 15)
    with pytest.raises(ValueError):
        crypto.V4_CIPHER.cbc_decrypt(ZERO, b"x" * 17)


@PROPS
@given(st.binary(max_size=100))
def test_pkcs7_pad_unpad(data):
    padded = crypto.pkcs7_pad(data)
    n = len(padded) - len(data)
    assert len(padded) % 16 == 0 and 1 <= n <= 16
    assert padded[len(data):] == bytes([n]) * n
    assert crypto.pkcs7_unpad(padded) == data


@pytest.mark.parametrize("bad", [b"", bytes(15) + b"\x00", bytes(14) + b"\x01\x02", bytes(16) + b"\x11" * 16,
                                 b"\x10" * 15, bytes(13) + b"\x02\x03\x03"])
def test_pkcs7_rejects_malformed_padding(bad):
    assert crypto.pkcs7_unpad(bad) is None


def test_pkcs7_request_and_response_paddings_of_the_protocol():
    assert crypto.pkcs7_pad(bytes(236))[236:] == b"\x04" * 4  # V5/V6 request
    assert crypto.pkcs7_pad(bytes(192))[192:] == b"\x10" * 16  # V5 response, P = 100
    assert crypto.pkcs7_pad(bytes(232))[232:] == b"\x08" * 8  # V6 response, P = 100


def test_expand_key_refuses_bad_lengths():
    for size in (0, 12, 15, 17, 36):
        with pytest.raises(ValueError):
            expand_key(bytes(size))


# --- the compiled rounds (optional C extension) against the pure-Python reference ---

def test_compiled_rounds_are_built():
    # setup.py builds them whenever a C compiler is present, as on every machine `make setup` runs on
    from conformance.wire import rijndael

    assert rijndael._rijndael is not None, "conformance/wire/_rijndael.c was not built; the host falls back to Python"
    assert crypto.V6_CIPHER.native and crypto.V4_CIPHER.native


@PROPS
@given(st.sampled_from([16, 20, 24, 28, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)), blocks,
       whole_blocks)
def test_compiled_rounds_equal_python_rounds(key, iv, data):
    python, compiled = Rijndael.from_key(key, native=False), Rijndael.from_key(key, native=True)
    block = (data + iv)[:16]
    assert compiled.encrypt_block(block) == python.encrypt_block(block)
    assert compiled.decrypt_block(block) == python.decrypt_block(block)
    assert compiled.cbc_encrypt(iv, data) == python.cbc_encrypt(iv, data)
    assert compiled.cbc_decrypt(iv, data) == python.cbc_decrypt(iv, data)


@pytest.mark.parametrize("native", [False, True], ids=["python", "compiled"])
def test_both_paths_give_the_protocol_vectors(native):
    v4 = Rijndael.from_key(crypto.V4_KEY, native=native)
    assert v4.encrypt_block(ZERO).hex() == "933030f10e2e7782b80915d5778a4957"
    v6 = Rijndael(crypto._v6_round_keys(), native=native)
    assert v6.encrypt_block(ZERO) == crypto.V6_CIPHER.encrypt_block(ZERO)
    assert Rijndael.from_key(crypto.V6_KEY, native=native).encrypt_block(ZERO).hex() == \
        "b4c3c015f6fb320c9b64aecd52fa58c8"


def test_compiled_rounds_refuse_bad_input():
    from conformance.wire import _rijndael

    schedule = Rijndael.from_key(bytes(16), native=True)._enc_packed
    with pytest.raises(ValueError, match="whole 16-byte blocks"):
        _rijndael.cbc_encrypt(schedule, ZERO, b"x" * 15)
    with pytest.raises(ValueError, match="IV must be 16 bytes"):
        _rijndael.cbc_decrypt(schedule, b"short", ZERO)
    with pytest.raises(ValueError, match="round keys"):
        _rijndael.ecb_encrypt(b"\0" * 20, ZERO)


def test_pure_python_can_be_forced(monkeypatch):
    from conformance.wire import rijndael

    monkeypatch.setenv("KMSCONF_PURE_PYTHON", "1")
    assert not rijndael.native_available() and not Rijndael.from_key(bytes(16)).native
