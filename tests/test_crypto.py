"""KMS crypto against PROTOCOL.md's vectors, and the hand-written Rijndael against `cryptography`."""

import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.wire import crypto
from conformance.wire.rijndael import Rijndael, expand_key

ZERO = bytes(16)


def test_v4_vectors():
    assert crypto.V4_CIPHER.encrypt_block(ZERO).hex() == "933030f10e2e7782b80915d5778a4957"
    assert crypto.v4_mac(b"").hex() == "d144963029e2bd12f9970c9f52b27f09"
    assert crypto.v4_mac(ZERO).hex() == "2a090d7c1155251ab86445447d060335"


def test_v5_vector():
    assert crypto.V5_AES.encrypt_block(ZERO).hex() == "ec7c7e75b1923978eac4b2d2260235d5"


def test_v6_round_key_tweaks_and_vectors():
    standard = expand_key(crypto.V6_KEY)
    modified = crypto._v6_round_keys()
    for rk, before, after in ((4, "7630e12e111e2b4d3f6a5901edca6094", "0530e12e"),
                              (6, "6adec9456920217355b4904484ea41e7", "63dec945"),
                              (8, "0bc82943cfb5552a5e7cb9074b5f14cd", "efc82943")):
        words = lambda ws: b"".join(w.to_bytes(4, "big") for w in ws[4 * rk: 4 * rk + 4]).hex()
        assert words(standard) == before
        assert words(modified).startswith(after) and words(modified)[8:] == before[8:]
    assert crypto.V6_AES.encrypt_block(ZERO).hex() == "8ca59de0c483c04aa7026a22d6dd208e"
    assert Rijndael.from_key(crypto.V6_KEY).encrypt_block(ZERO).hex() == "b4c3c015f6fb320c9b64aecd52fa58c8"


def test_v6_hmac_key_vector():
    assert crypto.v6_hmac_key(134400606700000000).hex() == "7ebdfb205d0e9dad9f3181fce4639700"


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_handwritten_rijndael_128_equals_cryptography_aes(key, block):
    ours = Rijndael.from_key(key)
    theirs = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert ours.encrypt_block(block) == theirs.update(block) + theirs.finalize()
    assert ours.decrypt_block(ours.encrypt_block(block)) == block


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([16, 20, 24, 28, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       st.binary(max_size=96).map(lambda b: b[: len(b) // 16 * 16]))
def test_cbc_round_trip_any_key_size(key, data):
    cipher = Rijndael.from_key(key)
    iv = os.urandom(16)
    assert cipher.cbc_decrypt(iv, cipher.cbc_encrypt(iv, data)) == data


@given(st.binary(max_size=100))
def test_pkcs7(data):
    padded = crypto.pkcs7_pad(data)
    assert len(padded) % 16 == 0 and len(padded) > len(data)
    assert crypto.pkcs7_unpad(padded) == data


def test_pkcs7_rejects_bad_padding():
    assert crypto.pkcs7_unpad(bytes(15) + b"\x00") is None
    assert crypto.pkcs7_unpad(bytes(14) + b"\x01\x02") is None
    assert crypto.pkcs7_unpad(b"") is None
