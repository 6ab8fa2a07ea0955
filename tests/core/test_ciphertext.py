"""The symmetric ciphertext format: parsing, sizes, golden bytes, and round-trip / tampering properties."""

from __future__ import annotations

import functools
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import aes, sm4
from ehsm_kms.core import ciphertext as ctfmt
from ehsm_kms.core.specs import KeySpec, info
from tests.core import assert_decryption_failed, flip, load_data

MODULES: dict[KeySpec, ModuleType] = {
    KeySpec.EH_AES_GCM_128: aes,
    KeySpec.EH_AES_GCM_192: aes,
    KeySpec.EH_AES_GCM_256: aes,
    KeySpec.EH_SM4_CTR: sm4,
    KeySpec.EH_SM4_CBC: sm4,
}
SPECS = list(MODULES)
GOLDEN = load_data("sym_formats.json")["cases"]


# ---------------------------------------------------------------- parsing
def test_module_does_not_load_cryptography() -> None:
    """Outer layers read key versions with this module, so it must not pull a crypto library into them."""
    code = (
        "import sys, ehsm_kms.core.ciphertext as c\n"
        "c.key_version(bytes([1, 0, 0, 0, 9]) + bytes(28))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'gmssl_pyx'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_key_version_of_golden(case: dict[str, object]) -> None:
    data = bytes.fromhex(str(case["expected"]))
    assert ctfmt.key_version(data) == case["key_version"]
    parts = ctfmt.parse(data)
    assert parts.format is ctfmt.format_for(KeySpec[str(case["spec"])])
    assert parts.header == data[: ctfmt.HEADER_LEN]
    assert ctfmt.pack(parts.header, parts.nonce, parts.payload, parts.tag) == data


def test_header_layout() -> None:
    assert ctfmt.header(ctfmt.Format.AES_GCM, 0x01020304) == bytes.fromhex("0101020304")
    assert ctfmt.header(ctfmt.Format.SM4_CTR_HMAC_SM3, 0) == bytes.fromhex("0200000000")
    assert ctfmt.header(ctfmt.Format.SM4_CBC_HMAC_SM3, ctfmt.KEY_VERSION_MAX) == bytes.fromhex("03ffffffff")


@pytest.mark.parametrize("version", [-1, ctfmt.KEY_VERSION_MAX + 1, 1 << 40])
def test_header_refuses_version_outside_u32(version: int) -> None:
    with pytest.raises(errors.CryptoError):
        ctfmt.header(ctfmt.Format.AES_GCM, version)


MALFORMED = {
    "empty": b"",
    "format byte only": b"\x01",
    "short header": b"\x01\x00\x00\x00",
    "AES-GCM header only": b"\x01\x00\x00\x00\x01",
    "AES-GCM one byte short of nonce and tag": b"\x01\x00\x00\x00\x01" + bytes(27),
    "format 0x00": b"\x00\x00\x00\x00\x01" + bytes(40),
    "format 0x04": b"\x04\x00\x00\x00\x01" + bytes(40),
    "format 0xff": b"\xff\x00\x00\x00\x01" + bytes(80),
    "SM4-CTR one byte short of iv and tag": b"\x02\x00\x00\x00\x01" + bytes(47),
    "SM4-CBC without a block": b"\x03\x00\x00\x00\x01" + bytes(48),
    "SM4-CBC partial block": b"\x03\x00\x00\x00\x01" + bytes(48 + 17),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_is_decryption_failed(data: bytes) -> None:
    assert_decryption_failed(lambda: ctfmt.key_version(data))


def test_parse_refuses_another_format() -> None:
    data = bytes.fromhex(GOLDEN[0]["expected"])
    assert_decryption_failed(lambda: ctfmt.parse(data, ctfmt.Format.SM4_CTR_HMAC_SM3))


@given(st.binary(max_size=200))
def test_key_version_of_anything_raises_only_decryption_failed(data: bytes) -> None:
    try:
        version = ctfmt.key_version(data)
    except errors.DecryptionFailed as exc:
        assert exc.message == errors.DecryptionFailed.default_message
    else:
        assert version == int.from_bytes(data[1:5], "big")


def test_format_for_refuses_specs_that_do_not_encrypt() -> None:
    for spec in (KeySpec.EH_RSA_2048, KeySpec.EH_EC_P256, KeySpec.EH_SM2, KeySpec.EH_HMAC):
        with pytest.raises(errors.CryptoError):
            ctfmt.format_for(spec)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 6144])
def test_ciphertext_length(spec: KeySpec, n: int) -> None:
    mod = MODULES[spec]
    data = mod.encrypt(spec, mod.generate_key(spec), bytes(n), b"", 1)
    assert len(data) == ctfmt.ciphertext_length(spec, n)


def test_largest_ciphertexts() -> None:
    """The sizes the wire layer's Decrypt limit must admit (6144-byte plaintext, contract 4.6)."""
    n = 6144
    assert ctfmt.ciphertext_length(KeySpec.EH_AES_GCM_256, n) == n + 33
    assert ctfmt.ciphertext_length(KeySpec.EH_SM4_CTR, n) == n + 53
    assert ctfmt.ciphertext_length(KeySpec.EH_SM4_CBC, n) == 6160 + 53


# ---------------------------------------------------------------- golden vectors
@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden(case: dict[str, object]) -> None:
    spec = KeySpec[str(case["spec"])]
    key, nonce, pt, aad, expected = (
        bytes.fromhex(str(case[f]))
        for f in ("key", "nonce" if "nonce" in case else "iv", "plaintext", "aad", "expected")
    )
    version = int(str(case["key_version"]))
    if MODULES[spec] is aes:
        made = aes._encrypt_with_nonce(spec, key, pt, aad, version, nonce=nonce)
    else:
        made = sm4._encrypt_with_iv(spec, key, pt, aad, version, iv=nonce)
    assert made == expected
    assert MODULES[spec].decrypt(spec, key, expected, aad) == pt


# ---------------------------------------------------------------- properties, every symmetric spec
def _key(spec: KeySpec) -> st.SearchStrategy[bytes]:
    n = info(spec).key_bytes
    return st.binary(min_size=n, max_size=n)


spec_st = st.sampled_from(SPECS)
plain_st = st.binary(max_size=300)
aad_st = st.binary(max_size=64)
version_st = st.integers(0, ctfmt.KEY_VERSION_MAX)


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st, version=version_st)
def test_round_trip(data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes, version: int) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    ct = mod.encrypt(spec, key, plaintext, aad, version)
    assert ctfmt.key_version(ct) == version
    assert mod.decrypt(spec, key, ct, aad) == plaintext


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st)
def test_any_changed_byte_fails(data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    ct = mod.encrypt(spec, key, plaintext, aad, 3)
    index = data.draw(st.integers(0, len(ct) - 1))
    mask = data.draw(st.integers(1, 255))
    assert_decryption_failed(lambda: mod.decrypt(spec, key, flip(ct, index, mask), aad))


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st, other=aad_st)
def test_changed_aad_fails(data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes, other: bytes) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    ct = mod.encrypt(spec, key, plaintext, aad, 3)
    if other == aad:
        other = aad + b"\x00"
    assert_decryption_failed(lambda: mod.decrypt(spec, key, ct, other))


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st)
def test_truncated_or_extended_fails(data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    ct = mod.encrypt(spec, key, plaintext, aad, 3)
    cut = data.draw(st.integers(0, len(ct) - 1))
    assert_decryption_failed(lambda: mod.decrypt(spec, key, ct[:cut], aad))
    extra = data.draw(st.binary(min_size=1, max_size=32))
    assert_decryption_failed(lambda: mod.decrypt(spec, key, ct + extra, aad))


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st, version=version_st, other=version_st)
def test_changed_key_version_fails(
    data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes, *, version: int, other: int
) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    ct = mod.encrypt(spec, key, plaintext, aad, version)
    if other == version:
        other = version ^ 1
    moved = ctfmt.header(ctfmt.format_for(spec), other) + ct[ctfmt.HEADER_LEN :]
    assert ctfmt.key_version(moved) == other  # the parse believes it; the core must not
    assert_decryption_failed(lambda: mod.decrypt(spec, key, moved, aad))


@given(data=st.data(), spec=spec_st, plaintext=plain_st, aad=aad_st)
def test_wrong_key_fails(data: st.DataObject, spec: KeySpec, plaintext: bytes, aad: bytes) -> None:
    mod, key = MODULES[spec], data.draw(_key(spec))
    other = data.draw(_key(spec).filter(lambda k: k != key))
    ct = mod.encrypt(spec, key, plaintext, aad, 3)
    assert_decryption_failed(lambda: mod.decrypt(spec, other, ct, aad))


@settings(max_examples=50)
@given(data=st.data(), plaintext=plain_st, aad=aad_st)
def test_ciphertext_of_one_spec_fails_under_another(data: st.DataObject, plaintext: bytes, aad: bytes) -> None:
    """The same 16 key bytes as AES-128, SM4-CTR and SM4-CBC: no spec opens another's ciphertext."""
    key = data.draw(st.binary(min_size=16, max_size=16))
    specs = [KeySpec.EH_AES_GCM_128, KeySpec.EH_SM4_CTR, KeySpec.EH_SM4_CBC]
    made = data.draw(st.sampled_from(specs))
    ct = MODULES[made].encrypt(made, key, plaintext, aad, 3)
    # Also relabel the format byte, so the refusal does not rest on the format check alone.
    for spec in specs:
        if spec is made:
            continue
        relabelled = bytes([ctfmt.format_for(spec)]) + ct[1:]
        assert_decryption_failed(functools.partial(MODULES[spec].decrypt, spec, key, ct, aad))
        assert_decryption_failed(functools.partial(MODULES[spec].decrypt, spec, key, relabelled, aad))
