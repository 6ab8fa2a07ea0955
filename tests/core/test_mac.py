"""HMAC keys: Wycheproof HMAC-SHA-2, GB/T 32905 SM3, GmSSL cross-check of HMAC-SM3, the self-test."""

from __future__ import annotations

import copy
from collections import Counter

import gmssl_pyx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import kat, mac
from ehsm_kms.core.specs import DigestMode
from tests.core import flip, load_data
from tests.vectors import load_vectors

WYCHEPROOF = {
    "hmac_sha256_test.json": (DigestMode.EH_SHA_256, 32),
    "hmac_sha384_test.json": (DigestMode.EH_SHA_384, 48),
    "hmac_sha512_test.json": (DigestMode.EH_SHA_512, 64),
}


@pytest.mark.parametrize("name", list(WYCHEPROOF))
def test_wycheproof_hmac(name: str) -> None:
    """Groups with a truncated ``tagSize`` are checked against a prefix of our full tag; :func:`mac.verify`
    itself must refuse every truncated tag, valid prefix or not."""
    digest, full = WYCHEPROOF[name]
    data = load_vectors(f"wycheproof/{name}")
    counts: Counter[str] = Counter()
    for group in data["testGroups"]:
        size = group["tagSize"] // 8
        for case in group["tests"]:
            key, msg, tag = (bytes.fromhex(case[f]) for f in ("key", "msg", "tag"))
            valid = case["result"] == "valid"
            assert case["result"] in ("valid", "invalid")
            tagged = mac.mac(key, digest, msg)
            assert len(tagged) == full
            assert (tagged[:size] == tag) is valid, f"tcId {case['tcId']}"
            if size == full:
                assert mac.verify(key, digest, msg, tag) is valid, f"tcId {case['tcId']}"
                counts["full tag, " + case["result"]] += 1
            else:
                assert mac.verify(key, digest, msg, tag) is False, f"tcId {case['tcId']}"
                counts[f"{size}-byte tag, " + case["result"]] += 1
    print(f"\nWycheproof {name}: {dict(counts)}")
    assert sum(counts.values()) == data["numberOfTests"]
    assert counts["full tag, valid"] >= 30
    assert counts["full tag, invalid"] >= 30


@pytest.mark.parametrize("case", load_data("sm_vectors.json")["sm3"], ids=lambda c: c["source"][:26])
def test_sm3_gbt_32905(case: dict[str, str]) -> None:
    assert mac._hash(DigestMode.EH_SM3, bytes.fromhex(case["message"])) == bytes.fromhex(case["digest"])


@settings(max_examples=50)
@given(key=st.binary(min_size=16, max_size=100), message=st.binary(min_size=1, max_size=300))
def test_hmac_sm3_matches_gmssl(key: bytes, message: bytes) -> None:
    tag = mac.mac(key, DigestMode.EH_SM3, message)
    assert tag == gmssl_pyx.sm3_hmac(key, message)
    assert mac.verify(key, DigestMode.EH_SM3, message, tag)


@pytest.mark.parametrize(
    "digest", [DigestMode.EH_SHA_256, DigestMode.EH_SHA_384, DigestMode.EH_SHA_512, DigestMode.EH_SM3]
)
def test_verify_refuses_altered_tags(digest: DigestMode) -> None:
    key = mac.generate_key()
    tag = mac.mac(key, digest, b"message")
    assert mac.verify(key, digest, b"message", tag)
    assert not mac.verify(key, digest, b"messagf", tag)
    assert not mac.verify(key, digest, b"message", flip(tag, len(tag) - 1))
    assert not mac.verify(key, digest, b"message", tag[:-1])
    assert not mac.verify(key, digest, b"message", tag[:16])
    assert not mac.verify(key, digest, b"message", tag + b"\x00")
    assert not mac.verify(key, digest, b"message", b"")
    assert not mac.verify(mac.generate_key(), digest, b"message", tag)


@pytest.mark.parametrize("digest", [DigestMode.EH_SHA_224, 0, 99])
def test_unsupported_digest(digest: DigestMode) -> None:
    with pytest.raises(errors.CryptoError):
        mac.mac(mac.generate_key(), digest, b"m")
    with pytest.raises(errors.CryptoError):
        mac.verify(mac.generate_key(), digest, b"m", bytes(32))


def test_short_key_refused() -> None:
    for n in (0, 1, 15):
        with pytest.raises(errors.CryptoError):
            mac.mac(bytes(n), DigestMode.EH_SHA_256, b"m")
    assert len(mac.mac(bytes(16), DigestMode.EH_SHA_256, b"m")) == 32


def test_generate_key() -> None:
    a, b = mac.generate_key(), mac.generate_key()
    assert len(a) == len(b) == 32
    assert a != b


def test_self_test_passes() -> None:
    mac.self_test()


def test_self_test_covers_every_digest() -> None:
    names = {c["algorithm"] for c in kat.load("hmac")["cases"]}
    assert names == {"HMAC-SHA-256", "HMAC-SHA-384", "HMAC-SHA-512", "HMAC-SM3"}


@pytest.mark.parametrize("field", ["tag", "message", "key"])
def test_self_test_fails_on_a_wrong_answer(field: str) -> None:
    data = kat.load("hmac")
    for index, case in enumerate(data["cases"]):
        bad = copy.deepcopy(data)
        bad["cases"][index][field] = flip(bytes.fromhex(case[field]), 0).hex()
        with pytest.raises(errors.CoreStartError, match=rf"^self-test failed: {case['algorithm']}$"):
            mac._run_mac_kat(bad)


def test_sm3_self_test_fails_on_a_wrong_answer() -> None:
    data = kat.load("sm3")
    bad = copy.deepcopy(data)
    bad["cases"][1]["digest"] = flip(bytes.fromhex(bad["cases"][1]["digest"]), 31).hex()
    with pytest.raises(errors.CoreStartError, match=r"^self-test failed: SM3$"):
        mac._run_hash_kat(bad)
