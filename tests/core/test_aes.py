"""AES-GCM: the raw primitive against Wycheproof, the public recipe, and the self-test."""

from __future__ import annotations

import copy
import functools
from collections import Counter

import pytest

from ehsm_kms import errors
from ehsm_kms.core import aes, kat, sm4
from ehsm_kms.core import ciphertext as ctfmt
from ehsm_kms.core.specs import KeySpec
from tests.core import assert_decryption_failed, flip
from tests.vectors import load_vectors

AES_SPECS = [KeySpec.EH_AES_GCM_128, KeySpec.EH_AES_GCM_192, KeySpec.EH_AES_GCM_256]


def test_wycheproof_aes_gcm() -> None:
    data = load_vectors("wycheproof/aes_gcm_test.json")
    counts: Counter[str] = Counter()
    for group in data["testGroups"]:
        assert group["tagSize"] == 128
        for case in group["tests"]:
            key, iv, aad, msg, ct, tag = (bytes.fromhex(case[f]) for f in ("key", "iv", "aad", "msg", "ct", "tag"))
            label = f"tcId {case['tcId']}"
            if group["ivSize"] != 96:
                # Our format only ever makes 96-bit nonces; the primitive refuses every other size, both ways.
                with pytest.raises(errors.CryptoError):
                    aes._seal(key, iv, msg, aad)
                assert_decryption_failed(lambda: aes._open(key, iv, ct + tag, aad))  # noqa: B023
                counts["other IV size, refused"] += 1
                continue
            if case["result"] == "valid":
                assert aes._seal(key, iv, msg, aad) == ct + tag, label
                assert aes._open(key, iv, ct + tag, aad) == msg, label
                counts["valid"] += 1
            else:
                assert case["result"] == "invalid", label
                assert_decryption_failed(lambda: aes._open(key, iv, ct + tag, aad))  # noqa: B023
                counts["invalid, refused"] += 1
    print(f"\nWycheproof aes_gcm_test.json: {dict(counts)}")
    assert sum(counts.values()) == data["numberOfTests"]
    assert counts["valid"] >= 60
    assert counts["invalid, refused"] >= 20


@pytest.mark.parametrize("spec", AES_SPECS, ids=[s.name for s in AES_SPECS])
def test_generate_key(spec: KeySpec) -> None:
    n = {KeySpec.EH_AES_GCM_128: 16, KeySpec.EH_AES_GCM_192: 24, KeySpec.EH_AES_GCM_256: 32}[spec]
    a, b = aes.generate_key(spec), aes.generate_key(spec)
    assert len(a) == len(b) == n
    assert a != b


@pytest.mark.parametrize("spec", [KeySpec.EH_SM4_CTR, KeySpec.EH_RSA_2048, KeySpec.EH_HMAC])
def test_other_specs_refused(spec: KeySpec) -> None:
    with pytest.raises(errors.CryptoError):
        aes.generate_key(spec)
    with pytest.raises(errors.CryptoError):
        aes.encrypt(spec, bytes(16), b"x", b"", 1)
    good = aes.encrypt(KeySpec.EH_AES_GCM_128, bytes(16), b"x", b"", 1)
    assert_decryption_failed(lambda: aes.decrypt(spec, bytes(16), good, b""))


@pytest.mark.parametrize("spec", AES_SPECS, ids=[s.name for s in AES_SPECS])
def test_layout(spec: KeySpec) -> None:
    key = aes.generate_key(spec)
    ct = aes.encrypt(spec, key, b"hello", b"aad", 0xDEADBEEF)
    assert ct[:5] == b"\x01\xde\xad\xbe\xef"
    assert len(ct) == 5 + 12 + 5 + 16
    # Fresh random nonce every time.
    assert aes.encrypt(spec, key, b"hello", b"aad", 0xDEADBEEF)[5:17] != ct[5:17]


def test_header_is_associated_data() -> None:
    """The AES-GCM associated data is header ‖ aad: opening the raw parts with the aad alone fails."""
    key = bytes(range(32))
    ct = aes.encrypt(KeySpec.EH_AES_GCM_256, key, b"data", b"aad", 9)
    parts = ctfmt.parse(ct)
    assert aes._open(key, parts.nonce, parts.payload + parts.tag, ct[:5] + b"aad") == b"data"
    assert_decryption_failed(lambda: aes._open(key, parts.nonce, parts.payload + parts.tag, b"aad"))


def test_key_size_mismatch() -> None:
    with pytest.raises(errors.CryptoError):
        aes.encrypt(KeySpec.EH_AES_GCM_256, bytes(16), b"x", b"", 1)
    ct = aes.encrypt(KeySpec.EH_AES_GCM_128, bytes(16), b"x", b"", 1)
    for size in (0, 15, 24, 32):
        assert_decryption_failed(functools.partial(aes.decrypt, KeySpec.EH_AES_GCM_128, bytes(size), ct, b""))
    assert_decryption_failed(lambda: aes.decrypt(KeySpec.EH_AES_GCM_256, bytes(16), ct, b""))


def test_sm4_ciphertext_refused() -> None:
    key = bytes(16)
    ct = sm4.encrypt(KeySpec.EH_SM4_CTR, key, b"x" * 40, b"", 1)
    assert_decryption_failed(lambda: aes.decrypt(KeySpec.EH_AES_GCM_128, key, ct, b""))


def test_empty_plaintext() -> None:
    key = bytes(24)
    ct = aes.encrypt(KeySpec.EH_AES_GCM_192, key, b"", b"", 2)
    assert len(ct) == 33
    assert aes.decrypt(KeySpec.EH_AES_GCM_192, key, ct, b"") == b""
    assert_decryption_failed(lambda: aes.decrypt(KeySpec.EH_AES_GCM_192, key, flip(ct, 32), b""))


def test_seal_refuses_other_nonce_sizes() -> None:
    for n in (0, 8, 11, 13, 16):
        with pytest.raises(errors.CryptoError):
            aes._seal(bytes(16), bytes(n), b"x", b"")


# ---------------------------------------------------------------- self-test
def test_self_test_passes() -> None:
    aes.self_test()


def test_self_test_uses_standard_and_format_answers() -> None:
    data = kat.load("aes_gcm")
    kinds = Counter(c["kind"] for c in data["cases"])
    assert kinds["primitive"] == 3
    assert kinds["format"] >= 1


@pytest.mark.parametrize("field", ["expected", "plaintext", "key", "aad", "nonce"])
def test_self_test_fails_on_a_wrong_answer(field: str) -> None:
    data = kat.load("aes_gcm")
    for index in range(len(data["cases"])):
        bad = copy.deepcopy(data)
        value = bytes.fromhex(bad["cases"][index][field])
        bad["cases"][index][field] = (flip(value, 0) if value else b"\x00").hex()
        with pytest.raises(errors.CoreStartError, match=r"^self-test failed: AES-GCM$"):
            aes._run_kat(bad)


def test_kat_loader_refuses_missing_data() -> None:
    with pytest.raises(errors.CoreStartError, match="no-such-file"):
        kat.load("no-such-file")
