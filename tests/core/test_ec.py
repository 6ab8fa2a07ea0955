"""ECDSA: Wycheproof verification per curve, our own keys end to end, interop with the openssl command, the
self-test and the pairwise check."""

from __future__ import annotations

import copy
import functools
import hashlib
import pickle
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import ec, kat
from ehsm_kms.core.specs import DIGEST_SIZES, DigestMode, KeySpec, MessageType, PaddingMode, info
from tests.core import flip
from tests.vectors import load_vectors

RAW, DIGEST = MessageType.EH_RAW, MessageType.EH_DIGEST
NONE = PaddingMode.EH_PAD_NONE
EC_SPECS = [
    KeySpec.EH_EC_P224,
    KeySpec.EH_EC_P256,
    KeySpec.EH_EC_P256K,
    KeySpec.EH_EC_P384,
    KeySpec.EH_EC_P521,
]
FILES = {
    "ecdsa_secp224r1_sha256_test.json": KeySpec.EH_EC_P224,
    "ecdsa_secp256r1_sha256_test.json": KeySpec.EH_EC_P256,
    "ecdsa_secp256k1_sha256_test.json": KeySpec.EH_EC_P256K,
    "ecdsa_secp384r1_sha384_test.json": KeySpec.EH_EC_P384,
    "ecdsa_secp521r1_sha512_test.json": KeySpec.EH_EC_P521,
}
OPENSSL_CURVE = {
    KeySpec.EH_EC_P224: "secp224r1",
    KeySpec.EH_EC_P256: "prime256v1",
    KeySpec.EH_EC_P256K: "secp256k1",
    KeySpec.EH_EC_P384: "secp384r1",
    KeySpec.EH_EC_P521: "secp521r1",
}
SHA = {
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


def assert_crypto_error(fn: Any) -> None:
    with pytest.raises(errors.CryptoError) as info_:
        fn()
    assert type(info_.value) is errors.CryptoError
    assert str(info_.value) == errors.CryptoError.default_message


# ---------------------------------------------------------------- Wycheproof
def _cases() -> list[Any]:
    params = []
    for name, spec in FILES.items():
        for group in load_vectors(f"wycheproof/{name}")["testGroups"]:
            for case in group["tests"]:
                params.append(pytest.param(spec, group, case, id=f"{spec.name}-tc{case['tcId']}"))
    return params


CASES = _cases()


@functools.cache
def _public(spec: KeySpec, der_hex: str) -> ec.EcPublicKey:
    return ec.load_public(spec, bytes.fromhex(der_hex))


def test_wycheproof_case_counts() -> None:
    per_spec = Counter(p.values[0] for p in CASES)
    for name, spec in FILES.items():
        assert per_spec[spec] == load_vectors(f"wycheproof/{name}")["numberOfTests"], name
    assert len(CASES) == 2487
    assert Counter(p.values[2]["result"] for p in CASES) == {"valid": 940, "invalid": 1547}


@pytest.mark.parametrize(("spec", "group", "case"), CASES)
def test_wycheproof_ecdsa_verify(spec: KeySpec, group: dict[str, Any], case: dict[str, Any]) -> None:
    assert group["publicKey"]["curve"] == ec.CURVES[spec].name
    key = _public(spec, group["publicKeyDer"])
    digest, py_hash = SHA[group["sha"]]
    message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    got = key.verify(message, RAW, digest, NONE, signature)
    # The same answer over the caller's own digest (EH_DIGEST); the padding is ignored.
    assert key.verify(py_hash(message).digest(), DIGEST, digest, PaddingMode.EH_RSA_PKCS1, signature) is got
    # These files hold no "acceptable" case (see the counts); an invalid one is False, never an error.
    assert got is (case["result"] == "valid")


# ---------------------------------------------------------------- our keys
@pytest.fixture(scope="module")
def materials() -> dict[KeySpec, bytes]:
    return {spec: ec.generate_key(spec) for spec in EC_SPECS}


@pytest.fixture(scope="module")
def keys(materials: dict[KeySpec, bytes]) -> dict[KeySpec, ec.EcKey]:
    return {spec: ec.load(spec, m) for spec, m in materials.items()}


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the openssl command is needed for the interop tests")
    return path


def _run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=data, capture_output=True, check=False)


@pytest.mark.parametrize("spec", EC_SPECS, ids=[s.name for s in EC_SPECS])
def test_generated_key(
    spec: KeySpec, materials: dict[KeySpec, bytes], keys: dict[KeySpec, ec.EcKey], openssl: str
) -> None:
    out = _run(openssl, "pkey", "-inform", "DER", "-noout", "-text", data=materials[spec])
    assert out.returncode == 0, out.stderr
    assert f"ASN1 OID: {OPENSSL_CURVE[spec]}" in out.stdout.decode()
    pem = keys[spec].public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert pem.endswith("-----END PUBLIC KEY-----\n")
    out = _run(openssl, "pkey", "-pubin", "-noout", "-text", data=pem.encode())
    assert out.returncode == 0, out.stderr
    assert f"ASN1 OID: {OPENSSL_CURVE[spec]}" in out.stdout.decode()
    # The PEM is exactly the public half openssl derives from the private key.
    out = _run(openssl, "pkey", "-inform", "DER", "-pubout", data=materials[spec])
    assert out.stdout.decode() == pem
    assert ec.generate_key(spec) != materials[spec]


def test_load_checks_the_curve(materials: dict[KeySpec, bytes]) -> None:
    assert_crypto_error(lambda: ec.load(KeySpec.EH_EC_P384, materials[KeySpec.EH_EC_P256]))
    assert_crypto_error(lambda: ec.load(KeySpec.EH_EC_P256, materials[KeySpec.EH_EC_P256K]))
    assert_crypto_error(lambda: ec.load(KeySpec.EH_EC_P256, b""))
    assert_crypto_error(lambda: ec.load(KeySpec.EH_EC_P256, materials[KeySpec.EH_EC_P256][:-1]))
    from ehsm_kms.core import rsa

    assert_crypto_error(lambda: ec.load(KeySpec.EH_EC_P256, rsa.generate_key(KeySpec.EH_RSA_2048)))
    p256 = ec.load(KeySpec.EH_EC_P256, materials[KeySpec.EH_EC_P256])
    der = _spki(p256.public_pem())
    assert_crypto_error(lambda: ec.load_public(KeySpec.EH_EC_P384, der))
    assert_crypto_error(lambda: ec.load_public(KeySpec.EH_EC_P256, der[:-1]))


def _spki(pem: str) -> bytes:
    import base64

    return base64.b64decode("".join(pem.strip().splitlines()[1:-1]))


@pytest.mark.parametrize("spec", [KeySpec.EH_RSA_2048, KeySpec.EH_SM2, KeySpec.EH_AES_GCM_128, KeySpec.EH_HMAC])
def test_other_specs_refused(spec: KeySpec, materials: dict[KeySpec, bytes]) -> None:
    assert_crypto_error(lambda: ec.generate_key(spec))
    assert_crypto_error(lambda: ec.load(spec, materials[KeySpec.EH_EC_P256]))


@pytest.mark.parametrize("spec", EC_SPECS, ids=[s.name for s in EC_SPECS])
@pytest.mark.parametrize("digest", DIGESTS, ids=[d.name for d in DIGESTS])
def test_sign_verify(spec: KeySpec, digest: DigestMode, keys: dict[KeySpec, ec.EcKey]) -> None:
    key = keys[spec]
    message = b"sign me " * 30
    signature = key.sign(message, RAW, digest, NONE)
    assert signature[0] == 0x30
    assert len(signature) <= info(spec).max_signature
    assert key.verify(message, RAW, digest, PaddingMode.EH_RSA_PKCS1_PSS, signature)  # padding ignored
    assert not key.verify(message + b".", RAW, digest, NONE, signature)
    assert not key.verify(message, RAW, digest, NONE, flip(signature, len(signature) - 1))
    assert key.sign(message, RAW, digest, NONE) != signature  # a fresh nonce every time
    prehash = _digest(digest, message)
    assert key.verify(prehash, DIGEST, digest, NONE, signature)
    assert key.verify(message, RAW, digest, NONE, key.sign(prehash, DIGEST, digest, NONE))


def _digest(digest: DigestMode, message: bytes) -> bytes:
    if digest is DigestMode.EH_SM3:
        import gmssl_pyx

        return bytes(gmssl_pyx.sm3_hash(message))
    return hashlib.new(digest.name.removeprefix("EH_").replace("_", "").lower(), message).digest()


@pytest.mark.parametrize("spec", EC_SPECS, ids=[s.name for s in EC_SPECS])
def test_signature_sizes(spec: KeySpec, keys: dict[KeySpec, ec.EcKey]) -> None:
    """Signatures fit the original's buffers (66/72/72/104/141 bytes)."""
    sizes = {len(keys[spec].sign(bytes([i]), RAW, DigestMode.EH_SHA_256, NONE)) for i in range(64)}
    assert max(sizes) <= info(spec).max_signature


@pytest.mark.parametrize("digest", DIGESTS, ids=[d.name for d in DIGESTS])
def test_digest_input_must_be_digest_sized(digest: DigestMode, keys: dict[KeySpec, ec.EcKey]) -> None:
    key = keys[KeySpec.EH_EC_P256]
    size = DIGEST_SIZES[digest]
    signature = key.sign(bytes(size), DIGEST, digest, NONE)
    for bad in (b"", bytes(size - 1), bytes(size + 1)):
        assert_crypto_error(lambda: key.sign(bad, DIGEST, digest, NONE))  # noqa: B023
        assert_crypto_error(lambda: key.verify(bad, DIGEST, digest, NONE, signature))  # noqa: B023


def test_refused_modes_and_malformed_signatures(keys: dict[KeySpec, ec.EcKey]) -> None:
    key = keys[KeySpec.EH_EC_P256]
    signature = key.sign(b"m", RAW, DigestMode.EH_SHA_256, NONE)
    for digest in (0, 6, 99):
        assert_crypto_error(lambda: key.sign(b"m", RAW, digest, NONE))  # type: ignore[arg-type]  # noqa: B023
        assert_crypto_error(lambda: key.verify(b"m", RAW, digest, NONE, signature))  # type: ignore[arg-type]  # noqa: B023
    for mtype in (0, 3):
        assert_crypto_error(lambda: key.sign(b"m", mtype, DigestMode.EH_SHA_256, NONE))  # type: ignore[arg-type]  # noqa: B023
    for bad in (b"", b"\x30", b"\x30\x00", signature[:-1], signature + b"\x00", b"\x00" * 64, b"\xff" * 72):
        assert key.verify(b"m", RAW, DigestMode.EH_SHA_256, NONE, bad) is False


@pytest.mark.parametrize("spec", EC_SPECS, ids=[s.name for s in EC_SPECS])
def test_openssl_interop(
    spec: KeySpec,
    materials: dict[KeySpec, bytes],
    keys: dict[KeySpec, ec.EcKey],
    tmp_path: Path,
    openssl: str,
) -> None:
    """Our signature verifies with ``openssl dgst``, and openssl's verifies with us."""
    keyfile, pub, msg = tmp_path / "k.der", tmp_path / "pub.pem", tmp_path / "msg"
    keyfile.write_bytes(materials[spec])
    pub.write_text(keys[spec].public_pem())
    msg.write_bytes(b"interop message")
    sig = tmp_path / "ours.sig"
    sig.write_bytes(keys[spec].sign(b"interop message", RAW, DigestMode.EH_SHA_384, NONE))
    out = _run(openssl, "dgst", "-sha384", "-verify", str(pub), "-signature", str(sig), str(msg))
    assert out.returncode == 0 and b"Verified OK" in out.stdout, out.stderr
    out = _run(openssl, "dgst", "-sha384", "-sign", str(keyfile), "-keyform", "DER", str(msg))
    assert out.returncode == 0, out.stderr
    assert keys[spec].verify(b"interop message", RAW, DigestMode.EH_SHA_384, NONE, out.stdout)


# ---------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(
    spec=st.sampled_from(EC_SPECS),
    digest=st.sampled_from(DIGESTS),
    message=st.binary(max_size=1024),
    index=st.integers(0, 200),
    mask=st.integers(1, 255),
)
def test_property_sign_verify(
    keys: dict[KeySpec, ec.EcKey], *, spec: KeySpec, digest: DigestMode, message: bytes, index: int, mask: int
) -> None:
    key = keys[spec]
    signature = key.sign(message, RAW, digest, NONE)
    assert key.verify(message, RAW, digest, NONE, signature)
    assert not key.verify(message, RAW, digest, NONE, flip(signature, index % len(signature), mask))


# ---------------------------------------------------------------- hygiene, pairwise check, self-test
def test_private_key_does_not_leak(keys: dict[KeySpec, ec.EcKey]) -> None:
    key = keys[KeySpec.EH_EC_P256]
    assert repr(key) == str(key) == "EcKey(EH_EC_P256, <private key hidden>)"
    for fn in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            fn(key)
    assert {n for n in dir(key) if not n.startswith("_")} == {"public_pem", "sign", "spec", "verify"}
    assert not hasattr(key, "__dict__")


def test_pairwise_check(keys: dict[KeySpec, ec.EcKey]) -> None:
    for key in keys.values():
        ec.pairwise_check(key)


def test_self_test_passes() -> None:
    data = kat.load("ec_kat")
    assert sorted(c["keyspec"] for c in data["cases"]) == sorted(s.name for s in EC_SPECS)
    ec.self_test()


@pytest.mark.parametrize("field", ["signature", "message", "public_key_der"])
def test_self_test_fails_on_a_wrong_answer(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = copy.deepcopy(kat.load("ec_kat"))
    case = data["cases"][2]
    value = bytes.fromhex(case[field])
    case[field] = flip(value, len(value) - 1).hex()
    monkeypatch.setattr(kat, "load", lambda name: data)
    with pytest.raises(errors.CoreStartError, match=r"^self-test failed: ec$"):
        ec.self_test()


def test_self_test_cases_match_wycheproof() -> None:
    for case in kat.load("ec_kat")["cases"]:
        name, _, tc = case["from"].partition(" tcId ")
        assert FILES[name].name == case["keyspec"]
        found = [
            (g, t) for g in load_vectors(f"wycheproof/{name}")["testGroups"] for t in g["tests"] if t["tcId"] == int(tc)
        ]
        assert len(found) == 1
        group, vector = found[0]
        assert vector["result"] == "valid"
        assert (case["public_key_der"], case["message"], case["signature"]) == (
            group["publicKeyDer"],
            vector["msg"],
            vector["sig"],
        )
        assert DigestMode[case["digest"]] is SHA[group["sha"]][0]
