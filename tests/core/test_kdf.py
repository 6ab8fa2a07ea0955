"""HKDF: Wycheproof HKDF-SHA-256, HKDF-SM3 against RFC 5869 written over GmSSL, the self-test."""

from __future__ import annotations

import copy
from collections import Counter

import gmssl_pyx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import kat, kdf
from tests.core import flip
from tests.vectors import load_vectors


def test_wycheproof_hkdf_sha256() -> None:
    data = load_vectors("wycheproof/hkdf_sha256_test.json")
    counts: Counter[str] = Counter()
    for group in data["testGroups"]:
        for case in group["tests"]:
            ikm, salt, info, okm = (bytes.fromhex(case[f]) for f in ("ikm", "salt", "info", "okm"))
            if case["result"] == "valid":
                assert kdf.hkdf_sha256(ikm, salt, info, case["size"]) == okm, f"tcId {case['tcId']}"
            else:
                assert case["result"] == "invalid"
                with pytest.raises(errors.CryptoError):
                    kdf.hkdf_sha256(ikm, salt, info, case["size"])
            counts[case["result"]] += 1
    print(f"\nWycheproof hkdf_sha256_test.json: {dict(counts)}")
    assert sum(counts.values()) == data["numberOfTests"]
    assert counts["valid"] >= 80
    assert counts["invalid"] >= 3


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_length_outside_rfc_5869(length: int) -> None:
    with pytest.raises(errors.CryptoError):
        kdf.hkdf_sha256(b"k", b"", b"", length)
    with pytest.raises(errors.CryptoError):
        kdf.hkdf_sm3(b"k", b"", b"", length)


def test_longest_output() -> None:
    assert len(kdf.hkdf_sha256(b"k", b"", b"", 255 * 32)) == 255 * 32


def test_empty_salt_is_a_zero_salt() -> None:
    assert kdf.hkdf_sha256(b"ikm", b"", b"i", 32) == kdf.hkdf_sha256(b"ikm", bytes(32), b"i", 32)


def test_info_separates_purposes() -> None:
    assert kdf.hkdf_sha256(b"ikm", b"", b"a", 32) != kdf.hkdf_sha256(b"ikm", b"", b"b", 32)


def _hkdf_sm3_gmssl(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = gmssl_pyx.sm3_hmac(salt or bytes(32), ikm)
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = gmssl_pyx.sm3_hmac(prk, block + info + bytes([counter]))
        okm, counter = okm + block, counter + 1
    return okm[:length]


@settings(max_examples=50)
@given(
    ikm=st.binary(min_size=1, max_size=64),
    salt=st.binary(max_size=64),
    info=st.binary(max_size=64),
    length=st.integers(1, 200),
)
def test_hkdf_sm3_matches_rfc_5869_over_gmssl(ikm: bytes, salt: bytes, info: bytes, length: int) -> None:
    assert kdf.hkdf_sm3(ikm, salt, info, length) == _hkdf_sm3_gmssl(ikm, salt, info, length)


def test_self_test_passes() -> None:
    kdf.self_test()


@pytest.mark.parametrize("field", ["okm", "ikm", "salt", "info"])
def test_self_test_fails_on_a_wrong_answer(field: str) -> None:
    data = kat.load("hkdf")
    for index, case in enumerate(data["cases"]):
        bad = copy.deepcopy(data)
        value = bytes.fromhex(case[field])
        bad["cases"][index][field] = (flip(value, 0) if value else b"\x01").hex()
        with pytest.raises(errors.CoreStartError, match=rf"^self-test failed: {case['algorithm']}$"):
            kdf._run_kat(bad)
