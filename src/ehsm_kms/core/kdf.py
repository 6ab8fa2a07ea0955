"""HKDF (RFC 5869), the one way the core turns one key into several.

A key is used for exactly one purpose; when a purpose needs its own key (the domain key's sub-keys, the SM4
formats' encryption and MAC keys) it is derived with HKDF and a distinct ``info`` label rather than reused.
HKDF-SM3 exists so that the SM4 formats depend on national algorithms only.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ehsm_kms import errors
from ehsm_kms.core import kat


def _hkdf(algorithm: hashes.HashAlgorithm, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 caps the output at 255 hash blocks; a request outside 1..cap is the caller's bug.
    if not 1 <= length <= 255 * algorithm.digest_size:
        raise errors.CryptoError()
    # An empty salt and an absent one are the same in HKDF (HMAC pads both to a block of zeros).
    return HKDF(algorithm=algorithm, length=length, salt=salt or None, info=info).derive(ikm)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return _hkdf(hashes.SHA256(), ikm, salt, info, length)


def hkdf_sm3(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return _hkdf(hashes.SM3(), ikm, salt, info, length)


def self_test() -> None:
    """RFC 5869 test cases; raises :class:`errors.CoreStartError` on a mismatch."""
    _run_kat(kat.load("hkdf"))


def _run_kat(data: kat.Data) -> None:
    funcs = {"HKDF-SHA-256": hkdf_sha256, "HKDF-SM3": hkdf_sm3}
    for case in data["cases"]:
        name = case["algorithm"]
        try:
            okm = funcs[name](
                kat.unhex(case, "ikm"),
                kat.unhex(case, "salt"),
                kat.unhex(case, "info"),
                len(case["okm"]) // 2,
            )
            ok = okm == kat.unhex(case, "okm")
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError(f"self-test failed: {name}")
