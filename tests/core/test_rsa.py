"""RSA: Wycheproof (OAEP decryption, PSS and PKCS#1 v1.5 verification, deterministic PKCS#1 v1.5 signing), our
own keys end to end, interop with the openssl command, the self-test and the pairwise check."""

from __future__ import annotations

import copy
import functools
import hashlib
import pickle
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import kat, rsa
from ehsm_kms.core.specs import DigestMode, KeySpec, MessageType, PaddingMode, rsa_plaintext_max
from tests.core import flip
from tests.vectors import load_vectors

RAW, DIGEST = MessageType.EH_RAW, MessageType.EH_DIGEST
PKCS1, PSS, OAEP = PaddingMode.EH_RSA_PKCS1, PaddingMode.EH_RSA_PKCS1_PSS, PaddingMode.EH_RSA_PKCS1_OAEP
SPEC_OF_BITS = {2048: KeySpec.EH_RSA_2048, 3072: KeySpec.EH_RSA_3072, 4096: KeySpec.EH_RSA_4096}
BITS = sorted(SPEC_OF_BITS)
SHA = {
    "SHA-224": (DigestMode.EH_SHA_224, hashlib.sha224),
    "SHA-256": (DigestMode.EH_SHA_256, hashlib.sha256),
    "SHA-384": (DigestMode.EH_SHA_384, hashlib.sha384),
    "SHA-512": (DigestMode.EH_SHA_512, hashlib.sha512),
}
DIGESTS = [
    DigestMode.EH_SHA_224,
    DigestMode.EH_SHA_256,
    DigestMode.EH_SHA_384,
    DigestMode.EH_SHA_512,
    DigestMode.EH_SM3,
]
PY_HASH = {
    DigestMode.EH_SHA_224: hashlib.sha224,
    DigestMode.EH_SHA_256: hashlib.sha256,
    DigestMode.EH_SHA_384: hashlib.sha384,
    DigestMode.EH_SHA_512: hashlib.sha512,
}


def assert_crypto_error(fn: Any) -> None:
    """``fn`` fails with exactly the core's one opaque error: one class, default message, no cause."""
    with pytest.raises(errors.CryptoError) as info:
        fn()
    exc = info.value
    assert type(exc) is errors.CryptoError
    assert exc.message == errors.CryptoError.default_message
    assert str(exc) == errors.CryptoError.default_message
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


# ---------------------------------------------------------------- Wycheproof
def _cases(pattern: str, groups: Any = lambda g: True) -> list[Any]:
    params = []
    for bits in BITS:
        name = pattern.format(bits=bits)
        data = load_vectors(f"wycheproof/{name}")
        for group in filter(groups, data["testGroups"]):
            for case in group["tests"]:
                params.append(pytest.param(bits, group, case, id=f"{bits}-tc{case['tcId']}"))
    return params


@functools.cache
def _private(bits: int, pkcs8_hex: str) -> rsa.RsaKey:
    return rsa.load(SPEC_OF_BITS[bits], bytes.fromhex(pkcs8_hex))


@functools.cache
def _public(bits: int, der_hex: str) -> rsa.RsaPublicKey:
    return rsa.load_public(SPEC_OF_BITS[bits], bytes.fromhex(der_hex))


OAEP_CASES = _cases("rsa_oaep_{bits}_sha256_mgf1sha256_test.json")
PSS_CASES = _cases("rsa_pss_{bits}_sha256_mgf1_32_test.json")
PKCS1_VERIFY_CASES = _cases("rsa_signature_{bits}_sha256_test.json")
PKCS1_SIGN_CASES = _cases("rsa_pkcs1_{bits}_sig_gen_test.json", lambda g: g["sha"] in SHA)
# SHA-1 groups: there is no SHA-1 digest mode, so they cannot be asked for (counted, not run).
PKCS1_SIGN_SHA1 = _cases("rsa_pkcs1_{bits}_sig_gen_test.json", lambda g: g["sha"] == "SHA-1")


def _count(params: list[Any], pred: Any = lambda g, c: True) -> int:
    return sum(1 for p in params if pred(p.values[1], p.values[2]))


def test_wycheproof_case_counts() -> None:
    """Every case of every file is collected (a truncated file fails here): the numbers run below."""
    expected = {
        "rsa_oaep_{bits}_sha256_mgf1sha256_test.json": OAEP_CASES,
        "rsa_pss_{bits}_sha256_mgf1_32_test.json": PSS_CASES,
        "rsa_signature_{bits}_sha256_test.json": PKCS1_VERIFY_CASES,
        "rsa_pkcs1_{bits}_sig_gen_test.json": PKCS1_SIGN_CASES + PKCS1_SIGN_SHA1,
    }
    for pattern, params in expected.items():
        total = sum(load_vectors(f"wycheproof/{pattern.format(bits=b)}")["numberOfTests"] for b in BITS)
        assert len(params) == total, pattern
    assert len(OAEP_CASES) == 111
    assert _count(OAEP_CASES, lambda g, c: bool(c["label"])) == 24
    assert len(PSS_CASES) == 324
    assert len(PKCS1_VERIFY_CASES) == 776
    assert len(PKCS1_SIGN_CASES) == 85
    assert len(PKCS1_SIGN_SHA1) == 8


@pytest.mark.parametrize(("bits", "group", "case"), OAEP_CASES)
def test_wycheproof_oaep_decrypt(bits: int, group: dict[str, Any], case: dict[str, Any]) -> None:
    assert (group["sha"], group["mgf"], group["mgfSha"]) == ("SHA-256", "MGF1", "SHA-256")
    key = _private(bits, group["privateKeyPkcs8"])
    ciphertext = bytes.fromhex(case["ct"])
    if case["label"]:
        # Our API has no label (the original's is always empty): a labelled ciphertext, valid or not, is
        # refused like any other bad ciphertext.
        assert_crypto_error(lambda: key.decrypt(ciphertext, OAEP))
    elif case["result"] == "valid":
        assert key.decrypt(ciphertext, OAEP) == bytes.fromhex(case["msg"])
    else:
        assert case["result"] == "invalid"
        assert_crypto_error(lambda: key.decrypt(ciphertext, OAEP))


def test_wycheproof_oaep_invalid_cases_give_one_error() -> None:
    """Refused ciphertexts, whatever the flaw (CVE-2020-26939 style), end in one error type and message."""
    seen: Counter[tuple[type, str, bool]] = Counter()
    for param in OAEP_CASES:
        bits, group, case = param.values
        if case["result"] == "valid" and not case["label"]:
            continue
        try:
            _private(bits, group["privateKeyPkcs8"]).decrypt(bytes.fromhex(case["ct"]), OAEP)
        except Exception as exc:
            seen[(type(exc), str(exc), exc.__cause__ is None)] += 1
        else:
            pytest.fail(f"tcId {case['tcId']} was accepted")
    refused = _count(OAEP_CASES, lambda g, c: c["result"] == "invalid" or bool(c["label"]))
    assert refused == 81
    assert seen == {(errors.CryptoError, "Server exception.", True): refused}


@pytest.mark.parametrize(("bits", "group", "case"), PSS_CASES)
def test_wycheproof_pss_verify(bits: int, group: dict[str, Any], case: dict[str, Any]) -> None:
    assert (group["sha"], group["mgfSha"], group["sLen"]) == ("SHA-256", "SHA-256", 32)
    _verify_case(bits, group, case, PSS)


@pytest.mark.parametrize(("bits", "group", "case"), PKCS1_VERIFY_CASES)
def test_wycheproof_pkcs1_verify(bits: int, group: dict[str, Any], case: dict[str, Any]) -> None:
    assert group["sha"] == "SHA-256"
    _verify_case(bits, group, case, PKCS1)


# The one "acceptable" case per PKCS#1 v1.5 file (tcId 8, a DigestInfo without the NULL parameters) and how it
# comes out with us: refused (OpenSSL only accepts the one DER encoding with NULL).
PKCS1_ACCEPTABLE = {(2048, 8): False, (3072, 8): False, (4096, 8): False}


def _verify_case(bits: int, group: dict[str, Any], case: dict[str, Any], padding: PaddingMode) -> None:
    key = _public(bits, group["publicKeyDer"])
    message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    digest, py_hash = SHA[group["sha"]]
    if len(signature) != bits // 8:
        assert case["result"] != "valid"
        assert_crypto_error(lambda: key.verify(message, RAW, digest, padding, signature))
        return
    got = key.verify(message, RAW, digest, padding, signature)
    # The same answer when the caller hashes the message itself (EH_DIGEST).
    assert key.verify(py_hash(message).digest(), DIGEST, digest, padding, signature) is got
    if case["result"] == "valid":
        assert got is True
    elif case["result"] == "invalid":
        assert got is False
    else:
        assert got is PKCS1_ACCEPTABLE[(bits, case["tcId"])], case["flags"]


@pytest.mark.parametrize(("bits", "group", "case"), PKCS1_SIGN_CASES)
def test_wycheproof_pkcs1_sign(bits: int, group: dict[str, Any], case: dict[str, Any]) -> None:
    """PKCS#1 v1.5 signing is deterministic: our signature is the vector's, byte for byte, either input."""
    key = _private(bits, group["privateKeyPkcs8"])
    digest, py_hash = SHA[group["sha"]]
    message, expected = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    assert key.sign(message, RAW, digest, PKCS1) == expected
    assert key.sign(py_hash(message).digest(), DIGEST, digest, PKCS1) == expected
    assert key.verify(message, RAW, digest, PKCS1, expected)


# ---------------------------------------------------------------- our keys
@pytest.fixture(scope="module")
def materials() -> dict[int, bytes]:
    """One key per size for the whole module (RSA-4096 generation takes seconds)."""
    return {bits: rsa.generate_key(SPEC_OF_BITS[bits]) for bits in BITS}


@pytest.fixture(scope="module")
def keys(materials: dict[int, bytes]) -> dict[int, rsa.RsaKey]:
    return {bits: rsa.load(SPEC_OF_BITS[bits], m) for bits, m in materials.items()}


@pytest.fixture(scope="module")
def key2048(keys: dict[int, rsa.RsaKey]) -> rsa.RsaKey:
    return keys[2048]


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the openssl command is needed for the interop tests")
    return path


def _run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=data, capture_output=True, check=False)


@pytest.mark.parametrize("bits", BITS)
def test_generated_key(bits: int, materials: dict[int, bytes], keys: dict[int, rsa.RsaKey], openssl: str) -> None:
    material, key = materials[bits], keys[bits]
    assert key.spec is SPEC_OF_BITS[bits]
    assert key.size == bits // 8
    # PKCS#8 DER: the openssl command reads it as an RSA key of the right size, exponent 65537.
    out = _run(openssl, "pkey", "-inform", "DER", "-noout", "-text", data=material)
    assert out.returncode == 0, out.stderr
    assert f"Private-Key: ({bits} bit, 2 primes)" in out.stdout.decode()
    assert "publicExponent: 65537 (0x10001)" in out.stdout.decode()
    pem = key.public_pem()
    assert pem.startswith("-----BEGIN RSA PUBLIC KEY-----\n")
    assert pem.endswith("-----END RSA PUBLIC KEY-----\n")
    out = _run(openssl, "rsa", "-RSAPublicKey_in", "-noout", "-text", data=pem.encode())
    assert out.returncode == 0, out.stderr
    assert f"Public-Key: ({bits} bit)" in out.stdout.decode()


def test_keys_differ(materials: dict[int, bytes]) -> None:
    assert rsa.generate_key(KeySpec.EH_RSA_2048) != materials[2048]


def test_load_refuses_other_sizes_and_material(materials: dict[int, bytes]) -> None:
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_3072, materials[2048]))
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, materials[4096]))
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, b""))
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, b"\x30\x03\x02\x01\x00"))
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, materials[2048][:-1]))
    from ehsm_kms.core import ec

    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, ec.generate_key(KeySpec.EH_EC_P256)))


@pytest.mark.parametrize("spec", [KeySpec.EH_EC_P256, KeySpec.EH_SM2, KeySpec.EH_AES_GCM_256, KeySpec.EH_HMAC])
def test_other_specs_refused(spec: KeySpec, materials: dict[int, bytes]) -> None:
    assert_crypto_error(lambda: rsa.generate_key(spec))
    assert_crypto_error(lambda: rsa.load(spec, materials[2048]))


def test_full_key_check_on_request(materials: dict[int, bytes]) -> None:
    """``validate=True`` runs OpenSSL's key check; a damaged CRT coefficient is refused by it."""
    material = materials[2048]
    damaged = flip(material, len(material) - 1)  # last byte of qInv
    assert rsa.load(KeySpec.EH_RSA_2048, material, validate=True).size == 256
    assert_crypto_error(lambda: rsa.load(KeySpec.EH_RSA_2048, damaged, validate=True))
    # Without the check the key loads, and OpenSSL's CRT self-check still releases only correct signatures.
    key, good = rsa.load(KeySpec.EH_RSA_2048, damaged), rsa.load(KeySpec.EH_RSA_2048, material)
    assert key.sign(b"m", RAW, DigestMode.EH_SHA_256, PKCS1) == good.sign(b"m", RAW, DigestMode.EH_SHA_256, PKCS1)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("padding", [PKCS1, PSS])
@pytest.mark.parametrize("digest", DIGESTS, ids=[d.name for d in DIGESTS])
def test_sign_verify(bits: int, padding: PaddingMode, digest: DigestMode, keys: dict[int, rsa.RsaKey]) -> None:
    key = keys[bits]
    message = b"sign me " * 40
    signature = key.sign(message, RAW, digest, padding)
    assert len(signature) == bits // 8
    assert key.verify(message, RAW, digest, padding, signature)
    assert not key.verify(message + b".", RAW, digest, padding, signature)
    assert not key.verify(message, RAW, digest, padding, flip(signature, 7))
    other = PSS if padding is PKCS1 else PKCS1
    assert not key.verify(message, RAW, digest, other, signature)
    wrong_digest = DigestMode.EH_SHA_384 if digest is DigestMode.EH_SHA_256 else DigestMode.EH_SHA_256
    assert not key.verify(message, RAW, wrong_digest, padding, signature)
    if digest in PY_HASH:
        prehash = PY_HASH[digest](message).digest()
        assert key.verify(prehash, DIGEST, digest, padding, signature)
        assert key.verify(message, RAW, digest, padding, key.sign(prehash, DIGEST, digest, padding))
        if padding is PKCS1:
            assert key.sign(prehash, DIGEST, digest, padding) == signature


def test_sm3_digest_input(key2048: rsa.RsaKey) -> None:
    """EH_DIGEST with SM3 signs a 32-byte SM3 digest as a prehash (the same as EH_RAW over the message)."""
    import gmssl_pyx

    message = b"sm3 please"
    prehash = gmssl_pyx.sm3_hash(message)
    signature = key2048.sign(prehash, DIGEST, DigestMode.EH_SM3, PKCS1)
    assert signature == key2048.sign(message, RAW, DigestMode.EH_SM3, PKCS1)


@pytest.mark.parametrize("digest", DIGESTS, ids=[d.name for d in DIGESTS])
def test_digest_input_must_be_digest_sized(digest: DigestMode, key2048: rsa.RsaKey) -> None:
    size = {DigestMode.EH_SHA_224: 28, DigestMode.EH_SHA_384: 48, DigestMode.EH_SHA_512: 64}.get(digest, 32)
    good = bytes(size)
    signature = key2048.sign(good, DIGEST, digest, PSS)
    for bad in (b"", bytes(size - 1), bytes(size + 1)):
        assert_crypto_error(lambda: key2048.sign(bad, DIGEST, digest, PSS))  # noqa: B023
        assert_crypto_error(lambda: key2048.verify(bad, DIGEST, digest, PSS, signature))  # noqa: B023


def test_refused_modes(key2048: rsa.RsaKey) -> None:
    sig = key2048.sign(b"m", RAW, DigestMode.EH_SHA_256, PKCS1)
    for padding in (PaddingMode.EH_PAD_NONE, OAEP, cast(PaddingMode, 99)):
        assert_crypto_error(lambda: key2048.sign(b"m", RAW, DigestMode.EH_SHA_256, padding))  # noqa: B023
        assert_crypto_error(lambda: key2048.verify(b"m", RAW, DigestMode.EH_SHA_256, padding, sig))  # noqa: B023
    for digest in (0, 6, 99):
        assert_crypto_error(lambda: key2048.sign(b"m", RAW, digest, PKCS1))  # type: ignore[arg-type]  # noqa: B023
        assert_crypto_error(lambda: key2048.verify(b"m", RAW, digest, PKCS1, sig))  # type: ignore[arg-type]  # noqa: B023
    for mtype in (0, 3):
        assert_crypto_error(lambda: key2048.sign(b"m", mtype, DigestMode.EH_SHA_256, PKCS1))  # type: ignore[arg-type]  # noqa: B023
    for padding in (PaddingMode.EH_PAD_NONE, PSS, cast(PaddingMode, 99)):
        assert_crypto_error(lambda: key2048.encrypt(b"m", padding))  # noqa: B023
        assert_crypto_error(lambda: key2048.decrypt(bytes(256), padding))  # noqa: B023


def test_verify_signature_length_is_an_error(key2048: rsa.RsaKey) -> None:
    """As in the original: a signature that is not k bytes is an error, not ``false``."""
    sig = key2048.sign(b"m", RAW, DigestMode.EH_SHA_256, PKCS1)
    for bad in (sig[:-1], sig + b"\x00", b"", b"\x00" + sig):
        assert_crypto_error(lambda: key2048.verify(b"m", RAW, DigestMode.EH_SHA_256, PKCS1, bad))  # noqa: B023
    assert key2048.verify(b"m", RAW, DigestMode.EH_SHA_256, PKCS1, bytes(256)) is False
    assert key2048.verify(b"m", RAW, DigestMode.EH_SHA_256, PKCS1, b"\xff" * 256) is False  # >= n


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("padding", [PKCS1, OAEP])
def test_encryption_limits(bits: int, padding: PaddingMode, keys: dict[int, rsa.RsaKey]) -> None:
    key = keys[bits]
    limit = rsa_plaintext_max(SPEC_OF_BITS[bits], padding)
    assert limit == bits // 8 - (11 if padding is PKCS1 else 66)
    for size in (0, 1, limit):
        plaintext = b"\x5a" * size
        ciphertext = key.encrypt(plaintext, padding)
        assert len(ciphertext) == bits // 8
        assert key.decrypt(ciphertext, padding) == plaintext
    assert_crypto_error(lambda: key.encrypt(bytes(limit + 1), padding))


def test_decrypt_failures_are_one_error(key2048: rsa.RsaKey) -> None:
    ciphertext = key2048.encrypt(b"secret", OAEP)
    for bad in (
        b"",
        ciphertext[:-1],
        ciphertext + b"\x00",
        flip(ciphertext, 0),
        flip(ciphertext, 255),
        bytes(256),
    ):
        assert_crypto_error(lambda: key2048.decrypt(bad, OAEP))  # noqa: B023
    assert_crypto_error(lambda: key2048.decrypt(b"\xff" * 256, OAEP))  # >= n
    assert_crypto_error(lambda: key2048.decrypt(key2048.encrypt(b"secret", PKCS1), OAEP))


def test_pkcs1_decrypt_implicit_rejection(key2048: rsa.RsaKey) -> None:
    """A malformed PKCS#1 v1.5 ciphertext never gives a distinguishable padding error: it is refused with the
    one error, or (OpenSSL's implicit rejection) answered with a stable pseudo-random plaintext."""
    ciphertext = key2048.encrypt(b"secret", PKCS1)
    for bad in (flip(ciphertext, 3), key2048.encrypt(b"secret", OAEP), bytes(256)):
        try:
            first = key2048.decrypt(bad, PKCS1)
        except errors.CryptoError as exc:
            assert str(exc) == errors.CryptoError.default_message
        else:
            assert first != b"secret"
            assert key2048.decrypt(bad, PKCS1) == first


def test_openssl_reads_our_oaep_and_pss(
    materials: dict[int, bytes], key2048: rsa.RsaKey, tmp_path: Path, openssl: str
) -> None:
    """The command line agrees on the details: OAEP-SHA-256 with MGF1-SHA-256, PSS salt = digest length."""
    keyfile = tmp_path / "k.der"
    keyfile.write_bytes(materials[2048])
    ct = key2048.encrypt(b"wrapped key bytes", OAEP)
    out = _run(
        openssl, "pkeyutl", "-decrypt", "-inkey", str(keyfile), "-keyform", "DER",
        "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
        "-pkeyopt", "rsa_mgf1_md:sha256",
        data=ct,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"wrapped key bytes"
    for digest, name, salt in ((DigestMode.EH_SHA_256, "sha256", 32), (DigestMode.EH_SHA_512, "sha512", 64)):
        prehash = PY_HASH[digest](b"pss").digest()
        sigfile = tmp_path / f"{name}.sig"
        sigfile.write_bytes(key2048.sign(b"pss", RAW, digest, PSS))
        out = _run(
            openssl, "pkeyutl", "-verify", "-inkey", str(keyfile), "-keyform", "DER",
            "-sigfile", str(sigfile), "-pkeyopt", "rsa_padding_mode:pss",
            "-pkeyopt", f"rsa_pss_saltlen:{salt}", "-pkeyopt", f"digest:{name}",
            "-pkeyopt", f"rsa_mgf1_md:{name}",
            data=prehash,
        )  # fmt: skip
        assert out.returncode == 0, (name, out.stdout, out.stderr)


def test_openssl_oaep_ciphertext_decrypts(key2048: rsa.RsaKey, tmp_path: Path, openssl: str) -> None:
    pub = tmp_path / "pub.pem"
    pub.write_text(key2048.public_pem())
    out = _run(
        openssl, "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), "-pkeyopt", "rsa_padding_mode:oaep",
        "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256",
        data=b"from openssl",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert key2048.decrypt(out.stdout, OAEP) == b"from openssl"


# ---------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=256 - 66), pkcs1=st.booleans())
def test_property_encrypt_decrypt(key2048: rsa.RsaKey, plaintext: bytes, pkcs1: bool) -> None:
    padding = PKCS1 if pkcs1 else OAEP
    ciphertext = key2048.encrypt(plaintext, padding)
    assert key2048.decrypt(ciphertext, padding) == plaintext
    if not pkcs1:
        assert key2048.encrypt(plaintext, padding) != ciphertext  # randomized


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=190), index=st.integers(0, 255), mask=st.integers(1, 255))
def test_property_oaep_tamper(key2048: rsa.RsaKey, plaintext: bytes, index: int, mask: int) -> None:
    ciphertext = key2048.encrypt(plaintext, OAEP)
    assert_crypto_error(lambda: key2048.decrypt(flip(ciphertext, index, mask), OAEP))


@settings(max_examples=25, deadline=None)
@given(
    message=st.binary(max_size=512),
    pss=st.booleans(),
    digest=st.sampled_from(DIGESTS),
    index=st.integers(0, 255),
    mask=st.integers(1, 255),
)
def test_property_sign_verify(
    key2048: rsa.RsaKey, *, message: bytes, pss: bool, digest: DigestMode, index: int, mask: int
) -> None:
    padding = PSS if pss else PKCS1
    signature = key2048.sign(message, RAW, digest, padding)
    assert key2048.verify(message, RAW, digest, padding, signature)
    assert not key2048.verify(message, RAW, digest, padding, flip(signature, index, mask))


# ---------------------------------------------------------------- hygiene, pairwise check, self-test
def test_private_key_does_not_leak(key2048: rsa.RsaKey, materials: dict[int, bytes]) -> None:
    assert repr(key2048) == str(key2048) == "RsaKey(EH_RSA_2048, <private key hidden>)"
    with pytest.raises(TypeError):
        pickle.dumps(key2048)
    with pytest.raises(TypeError):
        copy.deepcopy(key2048)
    with pytest.raises(TypeError):
        copy.copy(key2048)
    public_api = {n for n in dir(key2048) if not n.startswith("_")}
    assert public_api == {"decrypt", "encrypt", "public_pem", "sign", "size", "spec", "verify"}
    assert not hasattr(key2048, "__dict__")


def test_pairwise_check(keys: dict[int, rsa.RsaKey], materials: dict[int, bytes]) -> None:
    for key in keys.values():
        rsa.pairwise_check(key)
    # A key whose public exponent was damaged does not match its private half.
    material = materials[2048]
    at = material.index(bytes.fromhex("0203010001"))
    damaged = material[:at] + bytes.fromhex("0203010003") + material[at + 5 :]
    with pytest.raises(errors.CoreStartError, match="pairwise check failed: rsa"):
        rsa.pairwise_check(rsa.load(KeySpec.EH_RSA_2048, damaged))


def test_self_test_passes() -> None:
    data = kat.load("rsa_kat")
    assert {c["kind"] for c in data["cases"]} == {"pkcs1_sign", "oaep_decrypt", "pkcs1_verify", "pss_verify"}
    rsa.self_test()


@pytest.mark.parametrize("field", ["expected", "signature", "message", "ciphertext"])
def test_self_test_fails_on_a_wrong_answer(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = copy.deepcopy(kat.load("rsa_kat"))
    changed = 0
    for case in data["cases"]:
        if field in case:
            case[field] = flip(bytes.fromhex(case[field]) or b"\x00", 0).hex()
            changed += 1
    assert changed
    monkeypatch.setattr(kat, "load", lambda name: data)
    with pytest.raises(errors.CoreStartError, match=r"^self-test failed: rsa$"):
        rsa.self_test()


def test_self_test_cases_match_wycheproof() -> None:
    """The known answers are the Wycheproof cases they name, unchanged."""
    for case in kat.load("rsa_kat")["cases"]:
        name, _, tc = case["from"].partition(" tcId ")
        data = load_vectors(f"wycheproof/{name}")
        found = [(g, t) for g in data["testGroups"] for t in g["tests"] if t["tcId"] == int(tc)]
        assert len(found) == 1
        group, vector = found[0]
        assert vector["result"] == "valid"
        if "private_key_pkcs8" in case:
            assert case["private_key_pkcs8"] == group["privateKeyPkcs8"]
        if "public_key_der" in case:
            assert case["public_key_der"] == group["publicKeyDer"]
        for ours, theirs in (("message", "msg"), ("signature", "sig"), ("ciphertext", "ct")):
            if ours in case:
                assert case[ours] == vector[theirs]
        expected = vector["msg"] if case["kind"] == "oaep_decrypt" else vector.get("sig")
        assert case.get("expected", expected) == expected
