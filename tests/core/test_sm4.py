"""SM4: GB/T 32907 vectors, GmSSL cross-checks of primitives and formats, the recipe, the self-test.

GmSSL (through gmssl-pyx) is an SM4/SM3 implementation independent of OpenSSL's, so agreement with it checks
both the primitives we call and the construction written in sm4.py's docstring.
"""

from __future__ import annotations

import copy
import functools
import struct

import gmssl_pyx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import aes, kat, sm4
from ehsm_kms.core import ciphertext as ctfmt
from ehsm_kms.core.specs import KeySpec
from tests.core import assert_decryption_failed, flip, load_data

SM_VECTORS = load_data("sm_vectors.json")
SM4_SPECS = [KeySpec.EH_SM4_CTR, KeySpec.EH_SM4_CBC]
INFO = {
    KeySpec.EH_SM4_CTR: b"ehsm-kms sm4-ctr hmac-sm3 v1",
    KeySpec.EH_SM4_CBC: b"ehsm-kms sm4-cbc hmac-sm3 v1",
}


# ---------------------------------------------------------------- GB/T 32907
@pytest.mark.parametrize("case", SM_VECTORS["sm4"], ids=lambda c: f"{c['iterations']} iteration(s)")
def test_gbt_32907(case: dict[str, object]) -> None:
    key, pt, expected = (bytes.fromhex(str(case[f])) for f in ("key", "plaintext", "ciphertext"))
    n = int(str(case["iterations"]))
    # CBC from a zero IV over pt ‖ zero blocks computes E(pt), E(E(pt)), ...: the last block is E^n(pt).
    out = sm4._cbc_encrypt(key, bytes(16), pt + bytes(16 * (n - 1)))
    assert out[-16:] == expected
    assert len(out) == 16 * n
    if n == 1:
        assert sm4._cbc_decrypt(key, bytes(16), expected) == pt


# ---------------------------------------------------------------- primitives against GmSSL
@settings(max_examples=50)
@given(
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    data=st.binary(min_size=1, max_size=100),
)
def test_ctr_matches_gmssl(key: bytes, iv: bytes, data: bytes) -> None:
    assert sm4._ctr(key, iv, data) == gmssl_pyx.sm4_ctr_encrypt(key, iv, data)
    assert sm4._ctr(key, iv, sm4._ctr(key, iv, data)) == data


def test_ctr_counter_carries_across_the_whole_block() -> None:
    key, iv, data = bytes(range(16)), b"\xff" * 16, bytes(64)
    assert sm4._ctr(key, iv, data) == gmssl_pyx.sm4_ctr_encrypt(key, iv, data)


@settings(max_examples=50)
@given(
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    data=st.binary(min_size=1, max_size=100),
)
def test_cbc_pkcs7_matches_gmssl(key: bytes, iv: bytes, data: bytes) -> None:
    padded = sm4._pad(data)
    assert len(padded) == 16 * (len(data) // 16 + 1)
    out = sm4._cbc_encrypt(key, iv, padded)
    assert out == gmssl_pyx.sm4_cbc_padding_encrypt(key, iv, data)
    assert sm4._unpad(sm4._cbc_decrypt(key, iv, out)) == data


# ---------------------------------------------------------------- our formats, built independently
def _hkdf_sm3_gmssl(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = gmssl_pyx.sm3_hmac(salt or bytes(32), ikm)
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = gmssl_pyx.sm3_hmac(prk, block + info + bytes([counter]))
        okm, counter = okm + block, counter + 1
    return okm[:length]


def _independent(spec: KeySpec, key: bytes, iv: bytes, pt: bytes, aad: bytes, *, version: int) -> bytes:
    """The format exactly as sm4.py's docstring writes it, built from GmSSL only."""
    okm = _hkdf_sm3_gmssl(key, b"", INFO[spec], 48)
    enc_key, mac_key = okm[:16], okm[16:]
    head = bytes([2 if spec is KeySpec.EH_SM4_CTR else 3]) + struct.pack(">I", version)
    if spec is KeySpec.EH_SM4_CTR:
        payload = gmssl_pyx.sm4_ctr_encrypt(enc_key, iv, pt)
    else:
        payload = gmssl_pyx.sm4_cbc_padding_encrypt(enc_key, iv, pt)
    mac_input = head + iv + struct.pack(">Q", len(payload)) + payload + struct.pack(">Q", len(aad)) + aad
    return head + iv + payload + gmssl_pyx.sm3_hmac(mac_key, mac_input)


@settings(max_examples=50)
@given(
    spec=st.sampled_from(SM4_SPECS),
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    pt=st.binary(min_size=1, max_size=100),  # GmSSL refuses an empty plaintext
    aad=st.binary(max_size=40),
    version=st.integers(0, ctfmt.KEY_VERSION_MAX),
)
def test_format_matches_independent_construction(
    spec: KeySpec, key: bytes, iv: bytes, pt: bytes, aad: bytes, *, version: int
) -> None:
    made = sm4._encrypt_with_iv(spec, key, pt, aad, version, iv=iv)
    assert made == _independent(spec, key, iv, pt, aad, version=version)
    assert sm4.decrypt(spec, key, made, aad) == pt


def test_aad_boundary_cannot_shift() -> None:
    """Moving the last payload byte to the front of the aad keeps header ‖ iv ‖ payload ‖ aad the same; the
    length prefixes in the MAC input are what make the moved ciphertext fail."""
    spec, key = KeySpec.EH_SM4_CTR, bytes(16)
    ct = sm4.encrypt(spec, key, b"abcd", b"ef", 1)
    parts = ctfmt.parse(ct)
    moved = ctfmt.pack(parts.header, parts.nonce, parts.payload[:-1], parts.tag)
    moved_aad = parts.payload[-1:] + b"ef"
    assert parts.payload[:-1] + moved_aad == parts.payload + b"ef"
    assert_decryption_failed(lambda: sm4.decrypt(spec, key, moved, moved_aad))


# ---------------------------------------------------------------- the recipe
@pytest.mark.parametrize("spec", SM4_SPECS, ids=[s.name for s in SM4_SPECS])
def test_layout(spec: KeySpec) -> None:
    key = sm4.generate_key(spec)
    assert len(key) == 16
    assert sm4.generate_key(spec) != key
    ct = sm4.encrypt(spec, key, b"x" * 16, b"aad", 0x0A0B0C0D)
    fmt = 0x02 if spec is KeySpec.EH_SM4_CTR else 0x03
    assert ct[:5] == bytes([fmt, 0x0A, 0x0B, 0x0C, 0x0D])
    assert len(ct) == 5 + 16 + (16 if spec is KeySpec.EH_SM4_CTR else 32) + 32
    assert sm4.encrypt(spec, key, b"x" * 16, b"aad", 1)[5:21] != ct[5:21]  # fresh IV


def test_modes_use_different_subkeys() -> None:
    key = bytes(range(16))
    ctr = sm4._subkeys(ctfmt.Format.SM4_CTR_HMAC_SM3, key)
    cbc = sm4._subkeys(ctfmt.Format.SM4_CBC_HMAC_SM3, key)
    assert ctr[0] != cbc[0]
    assert ctr[1] != cbc[1]
    assert key not in (ctr[0], cbc[0])


def test_bad_padding_behind_a_valid_tag_is_the_same_error() -> None:
    """Reachable only by someone holding the key, but it must still be the one error."""
    spec, key, iv = KeySpec.EH_SM4_CBC, bytes(range(16)), bytes(16)
    fmt = ctfmt.Format.SM4_CBC_HMAC_SM3
    enc_key, mac_key = sm4._subkeys(fmt, key)
    head = ctfmt.header(fmt, 1)
    payload = sm4._cbc_encrypt(enc_key, iv, b"\x00" * 16)  # last byte 0x00 is not PKCS#7
    tag = gmssl_pyx.sm3_hmac(mac_key, sm4._mac_input(head, iv, payload, b""))
    assert_decryption_failed(lambda: sm4.decrypt(spec, key, ctfmt.pack(head, iv, payload, tag), b""))


@pytest.mark.parametrize("spec", [KeySpec.EH_AES_GCM_128, KeySpec.EH_RSA_2048, KeySpec.EH_HMAC])
def test_other_specs_refused(spec: KeySpec) -> None:
    with pytest.raises(errors.CryptoError):
        sm4.generate_key(spec)
    with pytest.raises(errors.CryptoError):
        sm4.encrypt(spec, bytes(16), b"x", b"", 1)
    good = sm4.encrypt(KeySpec.EH_SM4_CTR, bytes(16), b"x", b"", 1)
    assert_decryption_failed(lambda: sm4.decrypt(spec, bytes(16), good, b""))


def test_key_and_iv_sizes() -> None:
    with pytest.raises(errors.CryptoError):
        sm4.encrypt(KeySpec.EH_SM4_CTR, bytes(32), b"x", b"", 1)
    with pytest.raises(errors.CryptoError):
        sm4._encrypt_with_iv(KeySpec.EH_SM4_CTR, bytes(16), b"x", b"", 1, iv=bytes(12))
    ct = sm4.encrypt(KeySpec.EH_SM4_CBC, bytes(16), b"x", b"", 1)
    for size in (0, 15, 17, 32):
        assert_decryption_failed(functools.partial(sm4.decrypt, KeySpec.EH_SM4_CBC, bytes(size), ct, b""))


def test_mode_and_family_mismatch() -> None:
    key = bytes(16)
    ctr = sm4.encrypt(KeySpec.EH_SM4_CTR, key, b"x" * 32, b"", 1)
    cbc = sm4.encrypt(KeySpec.EH_SM4_CBC, key, b"x" * 32, b"", 1)
    gcm = aes.encrypt(KeySpec.EH_AES_GCM_128, key, b"x" * 32, b"", 1)
    assert_decryption_failed(lambda: sm4.decrypt(KeySpec.EH_SM4_CBC, key, ctr, b""))
    assert_decryption_failed(lambda: sm4.decrypt(KeySpec.EH_SM4_CTR, key, cbc, b""))
    assert_decryption_failed(lambda: sm4.decrypt(KeySpec.EH_SM4_CTR, key, gcm, b""))


@pytest.mark.parametrize("spec", SM4_SPECS, ids=[s.name for s in SM4_SPECS])
def test_every_single_byte_change_fails(spec: KeySpec) -> None:
    """Exhaustive over positions (the properties in test_ciphertext sample them)."""
    key = bytes(range(16))
    ct = sm4.encrypt(spec, key, b"seventeen bytes!!", b"aad", 5)
    for i in range(len(ct)):
        assert_decryption_failed(functools.partial(sm4.decrypt, spec, key, flip(ct, i), b"aad"))


# ---------------------------------------------------------------- self-test
def test_self_test_passes() -> None:
    sm4.self_test()


def test_self_test_has_the_standard_block() -> None:
    cases = kat.load("sm4")["cases"]
    blocks = [c for c in cases if c["kind"] == "block"]
    assert blocks[0]["expected"] == SM_VECTORS["sm4"][0]["ciphertext"]
    assert {c["mode"] for c in cases if c["kind"] == "format"} == {"SM4-CTR", "SM4-CBC"}


@pytest.mark.parametrize("field", ["expected", "plaintext", "key"])
def test_self_test_fails_on_a_wrong_answer(field: str) -> None:
    data = kat.load("sm4")
    for index in range(len(data["cases"])):
        bad = copy.deepcopy(data)
        bad["cases"][index][field] = flip(bytes.fromhex(bad["cases"][index][field]), 0).hex()
        with pytest.raises(errors.CoreStartError, match=r"^self-test failed: SM4$"):
            sm4._run_kat(bad)
