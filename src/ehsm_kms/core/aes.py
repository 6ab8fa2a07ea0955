"""AES-GCM CMKs (EH_AES_GCM_128/192/256): Encrypt, Decrypt and the data-key actions.

The ciphertext is the ``AES_GCM`` format of :mod:`ehsm_kms.core.ciphertext`::

    header(5) = 0x01 ‖ key version u32 BE
    ciphertext = header ‖ nonce(12) ‖ AES-GCM(key, nonce, plaintext, associated data = header ‖ aad) ‖ tag(16)

The caller's ``aad`` follows the fixed-length header in the associated data, so the two cannot trade bytes.
The nonce is 12 random bytes made here, never chosen by a caller (96 bits is the only GCM nonce size used:
other sizes are hashed into the counter and are refused). Random nonces bound one key version to about 2**32
encryptions (NIST SP 800-38D, 8.3): a CMK should be rotated long before that.

Every failed decryption (wrong key, tag, aad, header, length or key size) raises the same
:class:`ehsm_kms.errors.DecryptionFailed`, with no cause attached, so failures cannot be told apart.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ehsm_kms import errors
from ehsm_kms.core import ciphertext as ctfmt
from ehsm_kms.core import kat
from ehsm_kms.core.specs import Family, KeySpec, info

NONCE_LEN = 12
TAG_LEN = 16
_FORMAT = ctfmt.Format.AES_GCM


def _key_bytes(spec: KeySpec) -> int:
    si = info(spec)
    if si.family is not Family.AES:
        raise errors.CryptoError()
    return si.key_bytes


# ---------------------------------------------------------------- the raw primitive
def _seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM encryption, ``ciphertext ‖ tag``."""
    if len(nonce) != NONCE_LEN:
        raise errors.CryptoError()
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    """AES-GCM decryption of ``ciphertext ‖ tag``; every failure is :class:`errors.DecryptionFailed`."""
    if len(key) not in (16, 24, 32) or len(nonce) != NONCE_LEN or len(data) < TAG_LEN:
        raise errors.DecryptionFailed()
    try:
        return AESGCM(key).decrypt(nonce, data, aad)
    except (InvalidTag, ValueError, OverflowError):
        raise errors.DecryptionFailed() from None


# ---------------------------------------------------------------- the public recipe
def generate_key(spec: KeySpec) -> bytes:
    return os.urandom(_key_bytes(spec))


def encrypt(spec: KeySpec, key: bytes, plaintext: bytes, aad: bytes, key_version: int) -> bytes:
    return _encrypt_with_nonce(spec, key, plaintext, aad, key_version, nonce=os.urandom(NONCE_LEN))


def _encrypt_with_nonce(
    spec: KeySpec, key: bytes, plaintext: bytes, aad: bytes, key_version: int, *, nonce: bytes
) -> bytes:
    """:func:`encrypt` with a given nonce: for known-answer tests only, a repeated nonce breaks GCM."""
    if len(key) != _key_bytes(spec):
        raise errors.CryptoError()
    head = ctfmt.header(_FORMAT, key_version)
    sealed = _seal(key, nonce, plaintext, head + aad)
    return ctfmt.pack(head, nonce, sealed[:-TAG_LEN], sealed[-TAG_LEN:])


def decrypt(spec: KeySpec, key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    si = info(spec)
    if si.family is not Family.AES or len(key) != si.key_bytes:
        raise errors.DecryptionFailed()
    parts = ctfmt.parse(ciphertext, _FORMAT)
    return _open(key, parts.nonce, parts.payload + parts.tag, parts.header + aad)


# ---------------------------------------------------------------- self-test
_SPEC_OF_BITS = {128: KeySpec.EH_AES_GCM_128, 192: KeySpec.EH_AES_GCM_192, 256: KeySpec.EH_AES_GCM_256}


def self_test() -> None:
    """GCM specification known answers and our format's; :class:`errors.CoreStartError` on a mismatch."""
    _run_kat(kat.load("aes_gcm"))


def _run_kat(data: kat.Data) -> None:
    for case in data["cases"]:
        try:
            ok = _check(case)
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: AES-GCM")


def _check(case: kat.Data) -> bool:
    key, nonce, pt, aad = (kat.unhex(case, f) for f in ("key", "nonce", "plaintext", "aad"))
    expected = kat.unhex(case, "expected")
    if case["kind"] == "primitive":
        got = _seal(key, nonce, pt, aad)

        def open_(data: bytes) -> bytes:
            return _open(key, nonce, data, aad)
    else:
        spec = _SPEC_OF_BITS[len(key) * 8]
        got = _encrypt_with_nonce(spec, key, pt, aad, case["key_version"], nonce=nonce)

        def open_(data: bytes) -> bytes:
            return decrypt(spec, key, data, aad)

    if got != expected or open_(expected) != pt:
        return False
    # A KAT that only ever accepts proves little: a changed tag must be refused.
    try:
        open_(expected[:-1] + bytes([expected[-1] ^ 1]))
    except errors.DecryptionFailed:
        return True
    return False
