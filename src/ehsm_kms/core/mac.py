"""HMAC keys (EH_HMAC), our addition to the key model: GenerateMac / VerifyMac.

Only full-length tags are produced and accepted. A verifier that accepted a truncated tag would let a caller
pick its own forgery odds (a one-byte tag is guessed in 256 tries), so :func:`verify` compares against the
whole tag in constant time and a shorter tag is simply wrong. SHA-224 is refused: it adds nothing over SHA-256
for a MAC and every digest we accept is one more to keep correct. Keys shorter than 16 bytes are refused as
too weak to be a CMK.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

from ehsm_kms import errors
from ehsm_kms.core import kat
from ehsm_kms.core.specs import DigestMode, KeySpec, info

MIN_KEY_BYTES = 16

_HASHES: dict[DigestMode, type[hashes.HashAlgorithm]] = {
    DigestMode.EH_SHA_256: hashes.SHA256,
    DigestMode.EH_SHA_384: hashes.SHA384,
    DigestMode.EH_SHA_512: hashes.SHA512,
    DigestMode.EH_SM3: hashes.SM3,
}

_NAMES: dict[str, DigestMode] = {
    "HMAC-SHA-256": DigestMode.EH_SHA_256,
    "HMAC-SHA-384": DigestMode.EH_SHA_384,
    "HMAC-SHA-512": DigestMode.EH_SHA_512,
    "HMAC-SM3": DigestMode.EH_SM3,
}


def _algorithm(digest: DigestMode) -> hashes.HashAlgorithm:
    try:
        return _HASHES[digest]()
    except KeyError:
        raise errors.CryptoError() from None


def generate_key() -> bytes:
    return os.urandom(info(KeySpec.EH_HMAC).key_bytes)


def mac(key: bytes, digest: DigestMode, message: bytes) -> bytes:
    algorithm = _algorithm(digest)
    if len(key) < MIN_KEY_BYTES:
        raise errors.CryptoError()
    h = _hmac.HMAC(key, algorithm)
    h.update(message)
    return h.finalize()


def verify(key: bytes, digest: DigestMode, message: bytes, tag: bytes) -> bool:
    """Whether ``tag`` is the full tag of ``message``; compared in constant time (invariant 7)."""
    return _stdlib_hmac.compare_digest(mac(key, digest, message), tag)


def _hash(digest: DigestMode, message: bytes) -> bytes:
    h = hashes.Hash(_algorithm(digest))
    h.update(message)
    return h.finalize()


def self_test() -> None:
    """SM3 (GB/T 32905) and HMAC (RFC 4231, HMAC-SM3) known answers; CoreStartError if one is wrong."""
    _run_hash_kat(kat.load("sm3"))
    _run_mac_kat(kat.load("hmac"))


def _run_hash_kat(data: kat.Data) -> None:
    for case in data["cases"]:
        try:
            ok = _hash(DigestMode.EH_SM3, kat.unhex(case, "message")) == kat.unhex(case, "digest")
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: SM3")


def _run_mac_kat(data: kat.Data) -> None:
    for case in data["cases"]:
        name = case["algorithm"]
        try:
            key, message, tag = kat.unhex(case, "key"), kat.unhex(case, "message"), kat.unhex(case, "tag")
            digest = _NAMES[name]
            wrong = bytes([tag[0] ^ 1]) + tag[1:]
            ok = (
                mac(key, digest, message) == tag
                and verify(key, digest, message, tag)
                and not verify(key, digest, message, wrong)
                and not verify(key, digest, message, tag[:-1])
            )
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError(f"self-test failed: {name}")
